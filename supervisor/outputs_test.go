package supervisor

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/mcrelay/mcr/ruleset"
)

// TestAddRuleRefusesSourcePortConflicts: an output that asks for a
// source port another rule's output holds in a way no socket can serve is
// refused, naming both; outputs that agree share it.
func TestAddRuleRefusesSourcePortConflicts(t *testing.T) {
	tm := newTestMaster(t)
	a := testRule("a", "eth9", "239.1.1.1", 5000, "out0")
	a.Outputs[0].SourcePort = 5001
	addRules(a)(tm)
	same := testRule("same", "eth9", "239.1.1.2", 5000, "out0")
	same.Outputs[0].SourcePort = 5001
	addRules(same)(tm)
	other := testRule("other", "eth9", "239.1.1.3", 5000, "out0")
	other.Outputs[0].SourcePort, other.Outputs[0].Source = 5001, "10.2.0.1"
	_, err := tm.add(other)
	want := `already_exists: outputs[0].source_port: port 5001 on out0 is taken by rule "a" (outputs[0]) without a source address; ` +
		`outputs that fix one source port on one interface must name the same source address`
	if err == nil || err.Error() != want {
		t.Fatalf("add of a conflicting source port: %v, want %q", err, want)
	}
	for _, id := range []string{"a", "same"} {
		if err := tm.remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tm.add(other); err != nil {
		t.Errorf("add once the port is free: %v", err)
	}
}

// TestAddRuleRefusesTransparentWithoutRaw: when the start-up probe could
// not open raw sockets of a family, AddRule and LoadConfig refuse
// transparent outputs of that family and say why.
func TestAddRuleRefusesTransparentWithoutRaw(t *testing.T) {
	tm := newTestMaster(t)
	tm.master.raw = rawSupport{v4: fmt.Errorf("open raw IPv4 socket: %w (mcrd needs CAP_NET_RAW)", syscall.EPERM)}
	r := testRule("t", "eth9", "239.1.1.1", 5000, "out0")
	r.Outputs[0].PreserveSource = true
	_, err := tm.add(r)
	want := "invalid_argument: outputs[0].preserve_source: this mcrd cannot send transparent IPv4 outputs: " +
		"open raw IPv4 socket: operation not permitted (mcrd needs CAP_NET_RAW)"
	if err == nil || err.Error() != want {
		t.Errorf("add: %v, want %q", err, want)
	}
	v6 := testRule("t6", "eth9", "ff3e::1", 5000, "out0")
	v6.Outputs[0].Group, v6.Outputs[0].PreserveSource = "ff3e::2", true
	if _, err := tm.add(v6); err != nil {
		t.Errorf("add of an IPv6 transparent output, which the probe allowed: %v", err)
	}
	serr := tm.checkServable([]ruleset.Rule{testRule("x", "eth9", "239.1.1.2", 5000, "out0"), r})
	if serr == nil || !strings.HasPrefix(serr.Error(), "rules[1].outputs[0].preserve_source: this mcrd cannot send") {
		t.Errorf("checkServable of a config: %v, want rules[1] named", serr)
	}
}
