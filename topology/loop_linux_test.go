package topology

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/stats"
)

// loopNet is a relay whose input and output are ports of one bridge, with
// a sender on a third: whatever the relay sends on its output comes back
// to its input, as with two bridges or a mis-set switch.
//
//	src: src0 ── br0 ── in0, out0: relay
type loopNet struct {
	src, relay *netnstest.NS
}

func newLoopNet(t *testing.T) *loopNet {
	t.Helper()
	n := &loopNet{src: netnstest.New(t, "lsrc"), relay: netnstest.New(t, "lrly")}
	sw := netnstest.New(t, "lsw")
	sw.MustRun("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	sw.MustRun("ip", "link", "set", "br0", "up")
	for _, p := range []struct {
		ns          *netnstest.NS
		name, port  string
		addr, addr6 string
	}{
		{n.src, srcIf, "p0", "10.1.0.1/24", "fd00:1::1/64"},
		{n.relay, inIf, "p1", "10.1.0.2/24", "fd00:1::2/64"},
		{n.relay, outIf, "p2", "10.1.0.3/24", "fd00:1::3/64"},
	} {
		netnstest.Veth(t, p.ns, p.name, []string{p.addr, p.addr6}, sw, p.port, nil)
		sw.MustRun("ip", "link", "set", p.port, "master", "br0")
	}
	return n
}

// TestRelayLoop relays a group from the input to the same group on the
// output, which the bridge brings back to the input, with 100 seed
// datagrams: each is relayed once, its copy coming back is recognised by
// the output's source and counted (loops), and nothing circulates. An
// output that keeps the original source is recognised by nothing, but
// each pass costs a hop: a seed sent with TTL 8 is relayed 7 times and
// then dropped (ttl_expired).
func TestRelayLoop(t *testing.T) {
	t.Parallel()
	const seeds = 100
	for _, tc := range []struct {
		name       string
		preserve   bool
		in, out    uint64 // packets_in, packets_out of the rule
		loops, ttl uint64 // worker counters
	}{
		{name: "own source", in: seeds, out: seeds, loops: seeds},
		{name: "original source", preserve: true, in: 8 * seeds, out: 7 * seeds, ttl: seeds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newLoopNet(t)
			d := startDaemon(t, n.relay, daemonOptions{})
			o := out("239.1.1.1", 5000, outIf)
			o.PreserveSource = tc.preserve
			d.add(rule("loop", inIf, "239.1.1.1", 5000, o))
			d.waitReady()

			s := newStream(srcIf, "239.1.1.1", 5000)
			s.Count, s.Rate, s.TTL = seeds, 1000, 8
			send(t, n.src, s)

			want := fmt.Sprintf("in %d, out %d, loops %d, ttl_expired %d", tc.in, tc.out, tc.loops, tc.ttl)
			got := func() string {
				rep := d.stats()
				rr := ruleReport(t, rep, "loop")
				var c stats.WorkerCounters
				for _, w := range rep.Workers {
					c.Loops += w.Loops
					c.TTLExpired += w.TTLExpired
				}
				return fmt.Sprintf("in %d, out %d, loops %d, ttl_expired %d", rr.PacketsIn, rr.Outputs[0].PacketsOut, c.Loops, c.TTLExpired)
			}
			waitFor(t, 10*time.Second, want, func() bool { return got() == want })
			// A loop that circulated would keep counting: give it two
			// stats intervals to show.
			time.Sleep(2 * statsInterval)
			if g := got(); g != want {
				t.Errorf("after two more stats intervals: %s, want still %s", g, want)
			}
		})
	}
}
