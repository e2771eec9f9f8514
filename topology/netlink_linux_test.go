package topology

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/mcrgen"
	"github.com/mcrelay/mcr/stats"
)

// The scenarios of this file change the relay's interfaces under a running
// daemon and never call mcrctl to repair anything: after every
// change the daemon follows netlink on its own, and only reads (list,
// stats, workers) observe it.

// TestInputInterfaceLifecycle adds a rule on an input interface that does
// not exist yet, then creates it, takes it down and up, deletes it and
// creates it again under the same name: the rule is pending, active within
// a second of the interface being up, down, active again and forwarding
// each time, with its group joined on whichever in0 exists and no worker
// ever restarted.
func TestInputInterfaceLifecycle(t *testing.T) {
	t.Parallel()
	src, relay, sink := netnstest.New(t, "src"), netnstest.New(t, "rly"), netnstest.New(t, "snk")
	link(t, relay, outIf, sink, sinkIf, 2)
	d := startDaemon(t, relay, daemonOptions{})
	pids := d.workerPIDs()
	id := d.add(rule("lc", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.checkState(id, controlproto.StatePending, controlproto.StateActive)
	d.checkCounts(stats.StateCounts{Pending: 1}, stats.StateCounts{Active: 1})

	created := time.Now()
	link(t, src, srcIf, relay, inIf, 1)
	up := time.Now()
	d.waitState(id, controlproto.StateActive, 1*time.Second)
	t.Logf("rule active %v after the veth was created, %v after it was up",
		time.Since(created).Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	firstIndex := relay.IfIndex(inIf)
	d.checkForwarding(src, sink, id)
	checkJoined(t, relay, "239.1.1.1", true)

	relay.MustRun("ip", "link", "set", inIf, "down")
	d.waitState(id, controlproto.StateDown, 2*time.Second)
	d.checkCounts(stats.StateCounts{Down: 1}, stats.StateCounts{Active: 1})
	checkJoined(t, relay, "239.1.1.1", false)

	relay.MustRun("ip", "link", "set", inIf, "up")
	relay.WaitIPv6(inIf) // in0 operationally up again
	d.waitState(id, controlproto.StateActive, 2*time.Second)
	d.checkForwarding(src, sink, id)
	checkJoined(t, relay, "239.1.1.1", true)

	relay.MustRun("ip", "link", "del", inIf) // takes src0 along
	d.waitState(id, controlproto.StatePending, 2*time.Second)
	d.checkCounts(stats.StateCounts{Pending: 1}, stats.StateCounts{Active: 1})

	link(t, src, srcIf, relay, inIf, 1)
	if ix := relay.IfIndex(inIf); ix == firstIndex {
		t.Fatalf("recreated %s kept ifindex %d: the scenario needs a new one", inIf, ix)
	}
	d.waitState(id, controlproto.StateActive, 2*time.Second)
	d.checkForwarding(src, sink, id)
	checkJoined(t, relay, "239.1.1.1", true)

	d.checkWorkersKept(pids)
}

// TestOutputInterfaceLifecycle takes a working rule's output interface down
// and up, then deletes it and creates it again under the same name: the
// output's state follows (the rule stays active: its input is fine), and
// the output forwards again each time without an operator's help or a
// worker restart.
func TestOutputInterfaceLifecycle(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	pids := d.workerPIDs()
	id := d.add(rule("olc", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()
	d.checkForwarding(l.src, l.sink, id)

	l.relay.MustRun("ip", "link", "set", outIf, "down")
	d.waitOutputState(id, controlproto.StateDown)
	d.checkState(id, controlproto.StateActive, controlproto.StateDown)
	d.checkCounts(stats.StateCounts{Active: 1}, stats.StateCounts{Down: 1})

	l.relay.MustRun("ip", "link", "set", outIf, "up")
	l.relay.WaitIPv6(outIf)
	d.waitOutputState(id, controlproto.StateActive)
	d.checkForwarding(l.src, l.sink, id)

	l.relay.MustRun("ip", "link", "del", outIf) // takes sink0 along
	d.waitOutputState(id, controlproto.StatePending)
	d.checkCounts(stats.StateCounts{Active: 1}, stats.StateCounts{Pending: 1})

	link(t, l.relay, outIf, l.sink, sinkIf, 2)
	d.waitOutputState(id, controlproto.StateActive)
	d.checkForwarding(l.src, l.sink, id)

	d.checkWorkersKept(pids)
}

// TestOutputAddressChange renumbers the output interface under a rule whose
// egress source the kernel derives: datagrams leave from out0's address
// before, and from its new address after, with no operator action. The
// receivers are source-specific, so each gets only datagrams from the
// address it names.
func TestOutputAddressChange(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	pids := d.workerPIDs()
	id := d.add(rule("renum", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()
	d.checkForwardedFrom(l.src, l.sink, id, "10.2.0.1")

	// Removed first: removing a primary address takes its secondaries
	// along (unless promote_secondaries is set).
	l.relay.MustRun("ip", "addr", "del", "10.2.0.1/24", "dev", outIf)
	l.relay.MustRun("ip", "addr", "add", "10.2.0.9/24", "dev", outIf)
	d.checkForwardedFrom(l.src, l.sink, id, "10.2.0.9")

	d.checkWorkersKept(pids)
}

// ruleStatus returns rule id as `mcrctl --json list` shows it.
func (d *daemon) ruleStatus(id string) controlproto.RuleStatus {
	d.t.Helper()
	for _, r := range d.rules() {
		if r.ID == id {
			return r
		}
	}
	d.t.Fatalf("rule %q not in mcrctl list", id)
	return controlproto.RuleStatus{}
}

// checkState checks that rule id, with one output, is in state and its
// output in outState.
func (d *daemon) checkState(id, state, outState string) {
	d.t.Helper()
	r := d.ruleStatus(id)
	if got, want := r.State+" "+strings.Join(r.OutputStates, ","), state+" "+outState; got != want {
		d.t.Errorf("rule %s: state and output states %q, want %q", id, got, want)
	}
}

// waitState waits up to timeout for rule id to be in state.
func (d *daemon) waitState(id, state string, timeout time.Duration) {
	d.t.Helper()
	waitFor(d.t, timeout, fmt.Sprintf("rule %s %s in mcrctl list", id, state), func() bool {
		d.checkRunning()
		return d.ruleStatus(id).State == state
	})
}

// waitOutputState waits for rule id's only output to be in state.
func (d *daemon) waitOutputState(id, state string) {
	d.t.Helper()
	waitFor(d.t, 2*time.Second, fmt.Sprintf("output of rule %s %s in mcrctl list", id, state), func() bool {
		d.checkRunning()
		return slices.Equal(d.ruleStatus(id).OutputStates, []string{state})
	})
}

// checkCounts checks the rules and outputs counted by state in
// `mcrctl --json stats`.
func (d *daemon) checkCounts(rules, outputs stats.StateCounts) {
	d.t.Helper()
	tot := d.stats().Totals
	if diff := cmp.Diff([]stats.StateCounts{rules, outputs}, []stats.StateCounts{tot.Rules, tot.Outputs}); diff != "" {
		d.t.Errorf("stats totals: rules and outputs by state (-want +got):\n%s", diff)
	}
}

// forwardReady is how long the workers may take to serve a rule after an
// interface change: the supervisor re-sends the rule at once (with a new
// ifindex, or a new generation of its output interface, which gets it a
// new egress socket), and a worker reports the ruleset it holds once per
// stats interval. It is shorter than the 5 s after which a worker retries
// a socket that failed to open on its own: an output that recovers only
// by that retry fails the scenario.
const forwardReady = 4 * time.Second

// checkForwarding waits until the workers serve rule id, then relays one
// stream from src0 in src to sink0 in sink and checks that every datagram
// arrived intact and was counted.
func (d *daemon) checkForwarding(src, sink *netnstest.NS, id string) {
	d.t.Helper()
	d.waitServing(id)
	d.checkStream(&line{src: src, sink: sink}, id, "239.1.1.1", 5000, "239.2.2.2", 6000)
}

// checkForwardedFrom is checkForwarding with a receiver that takes only
// datagrams whose source address is from.
func (d *daemon) checkForwardedFrom(src, sink *netnstest.NS, id, from string) {
	d.t.Helper()
	d.waitServing(id)
	base := ruleReport(d.t, d.stats(), id)
	s := newStream(srcIf, "239.1.1.1", 5000)
	r := listenInProcess(d.t, sink, mcrgen.RecvConfig{Interface: sinkIf, Group: mustAddr(d.t, "239.2.2.2"), Port: 6000,
		Source: mustAddr(d.t, from), Count: s.Count, Timeout: recvTimeout})
	got := make(chan mcrgen.RecvResult, 1)
	go func() { got <- runAll(d.t, []*mcrgen.Receiver{r})[0] }()
	send(d.t, src, s)
	checkDelivered(d.t, "sink, from "+from, <-got, s.Count, s.Size)
	d.checkCountedSince(base, id, s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
}

// waitServing waits until the workers hold the daemon's ruleset and report
// no error for rule id: its sockets are open.
func (d *daemon) waitServing(id string) {
	d.t.Helper()
	waitFor(d.t, forwardReady, "workers in sync and serving rule "+id+" without error", func() bool {
		return d.synced() && ruleReport(d.t, d.stats(), id).Error == ""
	})
}

// checkJoined checks whether the relay has joined group on in0.
func checkJoined(t *testing.T, relay *netnstest.NS, group string, want bool) {
	t.Helper()
	waitFor(t, 2*time.Second, fmt.Sprintf("%s joined=%v on %s", group, want, inIf), func() bool {
		return joinedGroups(t, relay, inIf)[mustAddr(t, group)] == want
	})
}

// workerPIDs returns the pid of each worker slot.
func (d *daemon) workerPIDs() []int {
	d.t.Helper()
	var pids []int
	for _, w := range d.workerList() {
		pids = append(pids, w.PID)
	}
	return pids
}

// checkWorkersKept checks that the daemon still runs the workers it ran
// at first (pids), none ever restarted.
func (d *daemon) checkWorkersKept(pids []int) {
	d.t.Helper()
	d.checkRunning()
	var gotPIDs []int
	for _, w := range d.workerList() {
		gotPIDs = append(gotPIDs, w.PID)
		if w.Restarts != 0 || w.State != "running" {
			d.t.Errorf("worker %d: state %s, %d restarts; want running, never restarted", w.Worker, w.State, w.Restarts)
		}
	}
	if diff := cmp.Diff(pids, gotPIDs); diff != "" {
		d.t.Errorf("worker pids (-at start +now):\n%s", diff)
	}
}
