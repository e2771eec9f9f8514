package ruleset

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultIDIsStable(t *testing.T) {
	// Golden values: a default id is stored in saved configs and used by
	// scripts, so it must not change between runs or releases. If this test
	// fails, the canonical input encoding changed.
	tests := []struct {
		in   Input
		want string
	}{
		{Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000}, "64c84bba7aa083ca"},
		{Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000, Source: "10.0.0.9"}, "7b2e956f85b49702"},
		{Input{Interface: "eth0", Group: "ff3e::1", Port: 5000}, "8f3a7b18f7e61a23"},
	}
	for _, tt := range tests {
		if got := DefaultID(tt.in); got != tt.want {
			t.Errorf("DefaultID(%+v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDefaultID(t *testing.T) {
	base := Input{Interface: "eth0", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"}
	id := DefaultID(base)
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
		t.Fatalf("DefaultID = %q, want 16 lowercase hex digits", id)
	}
	if !validID(id) {
		t.Errorf("DefaultID = %q is not a valid id", id)
	}
	spelled := Input{Interface: "eth0", Group: "FF3E:0::1", Port: 5000, Source: "2001:DB8::0:9"}
	if got := DefaultID(spelled); got != id {
		t.Errorf("DefaultID(%+v) = %q, want %q as for %+v", spelled, got, id, base)
	}
	mapped := Input{Interface: "eth0", Group: "::ffff:239.1.1.1", Port: 5000}
	plain := Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000}
	if DefaultID(mapped) != DefaultID(plain) {
		t.Errorf("DefaultID of IPv4-mapped group differs from the IPv4 group")
	}
	changed := map[string]Input{
		"interface": {Interface: "eth1", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"},
		"group":     {Interface: "eth0", Group: "ff3e::2", Port: 5000, Source: "2001:db8::9"},
		"port":      {Interface: "eth0", Group: "ff3e::1", Port: 5001, Source: "2001:db8::9"},
		"source":    {Interface: "eth0", Group: "ff3e::1", Port: 5000},
		// Field boundaries are length-prefixed: moving bytes from one
		// field to the next changes the id.
		"shifted": {Interface: "eth0f", Group: "f3e::1", Port: 5000, Source: "2001:db8::9"},
	}
	for name, in := range changed {
		if DefaultID(in) == id {
			t.Errorf("changing the %s kept the id %q", name, id)
		}
	}
}

// ruleChanges each change one field of validRule, for the hash tests.
var ruleChanges = map[string]func(r *Rule){
	"id":                         func(r *Rule) { r.ID = "market-b" },
	"name":                       func(r *Rule) { r.Name = "market data B" },
	"input.interface":            func(r *Rule) { r.Input.Interface = "eth9" },
	"input.group":                func(r *Rule) { r.Input.Group = "239.1.1.2" },
	"input.port":                 func(r *Rule) { r.Input.Port = 5001 },
	"input.source":               func(r *Rule) { r.Input.Source = "10.0.0.8" },
	"no input.source":            func(r *Rule) { r.Input.Source = "" },
	"outputs[0].iface":           func(r *Rule) { r.Outputs[0].Interface = "eth2" },
	"outputs[0].group":           func(r *Rule) { r.Outputs[0].Group = "239.2.2.3" },
	"outputs[0].port":            func(r *Rule) { r.Outputs[0].Port = 6001 },
	"outputs[0].ttl":             func(r *Rule) { r.Outputs[0].TTL = 9 },
	"outputs[1].ttl":             func(r *Rule) { r.Outputs[1].TTL = 1 },
	"outputs[0].source":          func(r *Rule) { r.Outputs[0].Source = "10.1.0.2" },
	"outputs[0].source_port":     func(r *Rule) { r.Outputs[0].SourcePort = 5001 },
	"outputs[1].preserve_source": func(r *Rule) { r.Outputs[1].PreserveSource = true },
	"outputs[1] source_port or preserve_source": func(r *Rule) { r.Outputs[1].SourcePort = 'T' },
	"output order":   func(r *Rule) { r.Outputs[0], r.Outputs[1] = r.Outputs[1], r.Outputs[0] },
	"output removed": func(r *Rule) { r.Outputs = r.Outputs[:1] },
	"output added": func(r *Rule) {
		r.Outputs = append(r.Outputs, Output{Interface: "eth3", Group: "239.3.3.3", Port: 1})
	},
}

// TestCanonicalIsStable keeps the encoding of rules that use no optional
// output field what it was before those fields existed: ruleset hashes and
// the config diffs of running daemons compare it across upgrades.
func TestCanonicalIsStable(t *testing.T) {
	const want = "f6ff01128d2e6525"
	if got := Hash([]Rule{validRule()}); got != want {
		t.Errorf("Hash of validRule() = %s, want %s: the canonical encoding changed", got, want)
	}
}

func TestCanonical(t *testing.T) {
	r := validRule()
	enc := r.Canonical()
	if diff := cmp.Diff(validRule(), r); diff != "" {
		t.Errorf("Canonical modified the rule (-want +got):\n%s", diff)
	}
	spelled := validRule()
	spelled.Outputs[0].Group = "::FFFF:239.2.2.2"
	if got := spelled.Canonical(); !bytes.Equal(got, enc) {
		t.Errorf("Canonical of another spelling = %q, want %q", got, enc)
	}
	if spelled.Outputs[0].Group != "::FFFF:239.2.2.2" {
		t.Errorf("Canonical normalised the caller's outputs: group is now %q", spelled.Outputs[0].Group)
	}
	noID := validRule()
	noID.ID = ""
	withDefault := validRule()
	withDefault.ID = DefaultID(withDefault.Input)
	if !bytes.Equal(noID.Canonical(), withDefault.Canonical()) {
		t.Errorf("Canonical of a rule without id differs from the rule with its default id")
	}
	for name, change := range ruleChanges {
		c := validRule()
		change(&c)
		if bytes.Equal(c.Canonical(), enc) {
			t.Errorf("changing %s kept the canonical encoding", name)
		}
	}
}

// testRules returns n distinct valid rules.
func testRules(n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		rules[i] = Rule{
			ID:    fmt.Sprintf("r%d", i),
			Input: Input{Interface: "eth0", Group: fmt.Sprintf("239.1.%d.%d", i/256, i%256), Port: 5000},
			Outputs: []Output{
				{Interface: "eth1", Group: fmt.Sprintf("239.2.%d.%d", i/256, i%256), Port: 6000},
			},
		}
	}
	return rules
}

func TestHashIgnoresOrder(t *testing.T) {
	rules := testRules(6)
	want := Hash(rules)
	perm := make([]Rule, len(rules))
	for trial := range 50 {
		for i, j := range randPermSeed(len(rules), uint64(trial)+1) {
			perm[i] = rules[j]
		}
		if got := Hash(perm); got != want {
			t.Fatalf("Hash of permutation %d = %s, want %s", trial, got, want)
		}
	}
}

func TestHashSeesEveryField(t *testing.T) {
	rules := append(testRules(3), validRule())
	want := Hash(rules)
	for name, change := range ruleChanges {
		changed := append(testRules(3), validRule())
		change(&changed[3])
		if Hash(changed) == want {
			t.Errorf("changing %s of one rule kept the hash %s", name, want)
		}
	}
	if Hash(rules[:3]) == want {
		t.Errorf("removing a rule kept the hash")
	}
	if Hash(append(rules, rules[0])) == want {
		t.Errorf("adding a copy of a rule kept the hash")
	}
}

func TestHashEmpty(t *testing.T) {
	const want = "bb3302e8a9608868"
	for name, got := range map[string]string{
		"Hash(nil)":             Hash(nil),
		"Hash([]Rule{})":        Hash([]Rule{}),
		"HashCanonical(nil)":    HashCanonical(nil),
		"zero SetHash.String()": SetHash{}.String(),
	} {
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
}

func TestSetHashMatchesHashCanonical(t *testing.T) {
	rules := testRules(5)
	var h SetHash
	for _, r := range rules {
		h.Add(r.Canonical())
	}
	if got, want := h.String(), Hash(rules); got != want {
		t.Fatalf("SetHash after adding all = %s, Hash = %s", got, want)
	}
	h.Remove(rules[2].Canonical())
	rest := append(append([]Rule(nil), rules[:2]...), rules[3:]...)
	if got, want := h.String(), Hash(rest); got != want {
		t.Errorf("SetHash after Remove = %s, Hash of the rest = %s", got, want)
	}
	if h.Len() != 4 {
		t.Errorf("Len() = %d, want 4", h.Len())
	}
	for _, r := range rest {
		h.Remove(r.Canonical())
	}
	if got, want := h.String(), Hash(nil); got != want {
		t.Errorf("SetHash after removing everything = %s, want the empty hash %s", got, want)
	}
}

// randPermSeed is a pseudo-random permutation of 0..n-1 for seed != 0.
func randPermSeed(n int, seed uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	x := seed * 0x9e3779b97f4a7c15
	for i := n - 1; i > 0; i-- {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		j := int(x % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
