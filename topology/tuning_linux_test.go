package topology

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/ruleset"
)

// TestTuningWarningForRulesAddedLater starts mcrd without rules and adds
// them with mcrctl, as an operator who never uses --config would: the
// warning about GRO merging UDP on an input comes when the first rule on
// that interface arrives, once per interface however many rules use it,
// and for a rule whose interface does not exist yet when the interface
// appears. Each warning names where tune-kernel.sh is.
func TestTuningWarningForRulesAddedLater(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("skipping: ethtool not installed (apt-get install ethtool) to switch features for the test")
	}
	relay, peer := netnstest.New(t, "tnr"), netnstest.New(t, "tnp")
	netnstest.Veth(t, relay, "tg0", nil, peer, "tp0", nil)
	netnstest.Veth(t, relay, "out0", []string{"10.93.0.1/24"}, peer, "sink0", []string{"10.93.0.2/24"})
	relay.MustRun("ethtool", "-K", "tg0", "gro", "on", "rx-udp-gro-forwarding", "on")
	d := startDaemon(t, relay, daemonOptions{})

	warning := func(iface string) string {
		return "input interface " + iface + " has GRO with rx-udp-gro-forwarding on"
	}
	waitWarnings := func(iface string, want int) {
		t.Helper()
		netnstest.Poll(t, 10*time.Second, pollEvery, "the GRO warning for "+iface, func() bool {
			return strings.Count(d.proc.Output(), warning(iface)) >= want
		})
	}
	rule := func(id, in string, port int) ruleset.Rule {
		return ruleset.Rule{ID: id, Input: ruleset.Input{Interface: in, Group: "239.9.9.9", Port: port},
			Outputs: []ruleset.Output{{Interface: "out0", Group: "239.8.8.8", Port: port}}}
	}

	d.add(rule("a", "tg0", 5000))
	waitWarnings("tg0", 1)
	d.add(rule("b", "tg0", 5001))

	// A rule on an interface that does not exist yet: checked when the
	// interface appears, here with the feature already on (set up in
	// another namespace and moved in).
	d.add(rule("late", "tg9", 5000))
	staging := netnstest.New(t, "tns")
	netnstest.Veth(t, staging, "tg9", nil, peer, "tp9", nil)
	staging.MustRun("ethtool", "-K", "tg9", "gro", "on", "rx-udp-gro-forwarding", "on")
	staging.MustRun("ip", "link", "set", "tg9", "netns", relay.Name)
	relay.MustRun("ip", "link", "set", "tg9", "up")
	waitWarnings("tg9", 1)

	d.add(rule("c", "tg0", 5002))
	d.waitReady()
	out := d.proc.Output()
	for _, iface := range []string{"tg0", "tg9"} {
		if n := strings.Count(out, warning(iface)); n != 1 {
			t.Errorf("GRO warning for %s logged %d times, want once:\n%s", iface, n, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "has GRO with") && !strings.Contains(line, "/share/mcr/tune-kernel.sh tg") {
			t.Errorf("the warning does not say where tune-kernel.sh is installed: %s", line)
		}
	}
}
