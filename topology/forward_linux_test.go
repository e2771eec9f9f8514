package topology

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/mcrgen"
	"github.com/mcrelay/mcr/ruleset"
)

// TestBaseline relays one stream over one hop with group and port
// translation: 239.1.1.1:5000 on in0 → 239.2.2.2:6000 on out0.
func TestBaseline(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	id := d.add(rule("base", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, l.src, s)

	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted(id, s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
}

// TestChainThreeHops relays through three daemons in three namespaces,
// each translating to the next group and port:
//
//	src ─ r1 ─ r2 ─ r3 ─ sink   239.1.1.1:5001 → .2:5002 → .3:5003 → .4:5004
func TestChainThreeHops(t *testing.T) {
	t.Parallel()
	src, sink := netnstest.New(t, "src"), netnstest.New(t, "snk")
	relays := []*netnstest.NS{netnstest.New(t, "r1"), netnstest.New(t, "r2"), netnstest.New(t, "r3")}
	link(t, src, srcIf, relays[0], inIf, 1)
	link(t, relays[0], outIf, relays[1], inIf, 2)
	link(t, relays[1], outIf, relays[2], inIf, 3)
	link(t, relays[2], outIf, sink, sinkIf, 4)
	group := func(hop int) string { return fmt.Sprintf("239.1.1.%d", hop+1) }
	daemons := make([]*daemon, len(relays))
	for i, ns := range relays {
		daemons[i] = startDaemon(t, ns, daemonOptions{})
		daemons[i].add(rule("hop", inIf, group(i), 5001+i, out(group(i+1), 5002+i, outIf)))
		daemons[i].waitReady()
	}

	s := newStream(srcIf, group(0), 5001)
	r := startRecv(t, sink, sinkIf, group(3), 5004, s.Count)
	send(t, src, s)

	checkDelivered(t, "sink after three hops", r.result(), s.Count, s.Size)
	for i, d := range daemons {
		d.checkCounted("hop", s.Count, s.Size, dest(group(i+1), 5002+i, outIf))
	}
}

// TestTreeOneToThree relays one stream to three branches, each through its
// own leaf relay to its own receiver:
//
//	              ┌ out0 ─ leaf0 ─ sink0
//	src ─ root ───┼ out1 ─ leaf1 ─ sink1
//	              └ out2 ─ leaf2 ─ sink2
//
// The root sends branch i to 239.10.0.i:5001; leaf i translates it to
// 239.20.0.i:6000.
func TestTreeOneToThree(t *testing.T) {
	t.Parallel()
	src, root := netnstest.New(t, "src"), netnstest.New(t, "root")
	link(t, src, srcIf, root, inIf, 1)
	var rootOuts []ruleset.Output
	var rootDests []string
	leaves := make([]*daemon, 3)
	receivers := make([]*receiver, 3)
	s := newStream(srcIf, "239.1.1.1", 5000)
	for i := range leaves {
		leaf, sink := netnstest.New(t, fmt.Sprintf("leaf%d", i)), netnstest.New(t, fmt.Sprintf("snk%d", i))
		branch, leafGroup := fmt.Sprintf("out%d", i), fmt.Sprintf("239.10.0.%d", i+1)
		sinkGroup := fmt.Sprintf("239.20.0.%d", i+1)
		link(t, root, branch, leaf, inIf, 10+i)
		link(t, leaf, outIf, sink, sinkIf, 20+i)
		rootOuts = append(rootOuts, out(leafGroup, 5001, branch))
		rootDests = append(rootDests, dest(leafGroup, 5001, branch))
		leaves[i] = startDaemon(t, leaf, daemonOptions{})
		leaves[i].add(rule("leaf", inIf, leafGroup, 5001, out(sinkGroup, 6000, outIf)))
		leaves[i].waitReady()
		receivers[i] = startRecv(t, sink, sinkIf, sinkGroup, 6000, s.Count)
	}
	rd := startDaemon(t, root, daemonOptions{})
	rd.add(rule("root", inIf, "239.1.1.1", 5000, rootOuts...))
	rd.waitReady()

	send(t, src, s)

	for i, r := range receivers {
		checkDelivered(t, fmt.Sprintf("sink of branch %d", i), r.result(), s.Count, s.Size)
	}
	rd.checkCounted("root", s.Count, s.Size, rootDests...)
	for i, d := range leaves {
		d.checkCounted("leaf", s.Count, s.Size, dest(fmt.Sprintf("239.20.0.%d", i+1), 6000, outIf))
	}
}

// TestMergeThreeToOne merges the same group arriving from three senders on
// three interfaces into one output group, all three streams at once.
func TestMergeThreeToOne(t *testing.T) {
	t.Parallel()
	relay, sink := netnstest.New(t, "rly"), netnstest.New(t, "snk")
	link(t, relay, outIf, sink, sinkIf, 9)
	d := startDaemon(t, relay, daemonOptions{})
	srcs := make([]*netnstest.NS, 3)
	for i := range srcs {
		srcs[i] = netnstest.New(t, fmt.Sprintf("src%d", i))
		link(t, srcs[i], srcIf, relay, fmt.Sprintf("in%d", i), 1+i)
		d.add(rule(fmt.Sprintf("from%d", i), fmt.Sprintf("in%d", i), "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	}
	d.waitReady()

	var streams []stream
	for i := range srcs {
		s := newStream(srcIf, "239.1.1.1", 5000)
		s.Rate, s.StreamID = 5000, i+1 // the receiver tells the streams apart by id
		streams = append(streams, s)
	}
	r := startRecv(t, sink, sinkIf, "239.2.2.2", 6000, 3*streams[0].Count)
	senders := make([]*sender, len(srcs))
	for i, ns := range srcs {
		senders[i] = startSend(t, ns, streams[i])
	}
	for _, s := range senders {
		s.wait()
	}

	got := r.result()
	checkDelivered(t, "sink of the merge", got, 3*streams[0].Count, streams[0].Size)
	if got.Streams != 3 {
		t.Errorf("sink saw %d streams, want 3", got.Streams)
	}
	for i := range srcs {
		d.checkCounted(fmt.Sprintf("from%d", i), streams[i].Count, streams[i].Size, dest("239.2.2.2", 6000, outIf))
	}
}

// TestFanOutFifty relays one stream to 50 groups on one output link, IPv4
// and IPv6, with a receiver per group: every copy of every datagram is
// accounted at the sink, not only at the interface.
func TestFanOutFifty(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		group    func(i int) string
	}{
		{"ipv4", "239.1.1.1", func(i int) string { return fmt.Sprintf("239.3.0.%d", i+1) }},
		{"ipv6", "ff1e::1:1", func(i int) string { return fmt.Sprintf("ff1e::3:%x", i+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fanOut(t, tc.in, tc.group)
		})
	}
}

// fanOut runs one rule from group in on in0 to 50 outputs group(i):6000 on
// out0 and checks every receiver and every output counter.
func fanOut(t *testing.T, in string, group func(i int) string) {
	const outputs = 50
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	var outs []ruleset.Output
	var dests []string
	for i := range outputs {
		outs = append(outs, out(group(i), 6000, outIf))
		dests = append(dests, dest(group(i), 6000, outIf))
	}
	d.add(rule("fan", inIf, in, 5000, outs...))
	d.waitReady()

	// 1,000 datagrams at 1,000/s: 50,000 relayed datagrams a second.
	s := newStream(srcIf, in, 5000)
	s.Count, s.Rate, s.Size = 1000, 1000, 500
	receivers := make([]*mcrgen.Receiver, outputs)
	for i := range receivers {
		receivers[i] = listenInProcess(t, l.sink, mcrgen.RecvConfig{Interface: sinkIf, Group: mustAddr(t, group(i)),
			Port: 6000, Count: s.Count, Timeout: recvTimeout})
	}
	start := time.Now()
	results := make(chan []mcrgen.RecvResult, 1)
	go func() { results <- runAll(t, receivers) }()
	send(t, l.src, s)

	for i, res := range <-results {
		checkDelivered(t, "receiver of "+group(i), res, s.Count, s.Size)
	}
	t.Logf("%d × %d datagrams delivered in %v", outputs, s.Count, time.Since(start).Round(time.Millisecond))
	d.checkCounted("fan", s.Count, s.Size, dests...)
}

// TestUnicastTunnel carries multicast across a routed middle that does not
// route multicast: r1 relays the group to r2's unicast address, the router
// forwards it like any unicast datagram, and r2 relays it to a group again.
//
//	src ─ r1 ═ router ═ r2 ─ sink
//	      wan0 10.5.0.1 → a0 10.5.0.2 | b0 10.6.0.2 → wan0 10.6.0.1
func TestUnicastTunnel(t *testing.T) {
	t.Parallel()
	src, r1, router, r2, sink := netnstest.New(t, "src"), netnstest.New(t, "r1"), netnstest.New(t, "rtr"),
		netnstest.New(t, "r2"), netnstest.New(t, "snk")
	link(t, src, srcIf, r1, inIf, 1)
	link(t, r1, "wan0", router, "a0", 5)
	link(t, r2, "wan0", router, "b0", 6)
	link(t, r2, outIf, sink, sinkIf, 7)
	router.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	r1.MustRun("ip", "route", "add", "10.6.0.0/24", "via", "10.5.0.2")
	r2.MustRun("ip", "route", "add", "10.5.0.0/24", "via", "10.6.0.2")

	d1, d2 := startDaemon(t, r1, daemonOptions{}), startDaemon(t, r2, daemonOptions{})
	d1.add(rule("encap", inIf, "239.1.1.1", 5000, out("10.6.0.1", 7000, "wan0")))
	d2.add(rule("decap", "wan0", "10.6.0.1", 7000, out("239.9.9.9", 6000, outIf)))
	d1.waitReady()
	d2.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	r := startRecv(t, sink, sinkIf, "239.9.9.9", 6000, s.Count)
	send(t, src, s)

	checkDelivered(t, "sink behind the tunnel", r.result(), s.Count, s.Size)
	d1.checkCounted("encap", s.Count, s.Size, dest("10.6.0.1", 7000, "wan0"))
	d2.checkCounted("decap", s.Count, s.Size, dest("239.9.9.9", 6000, outIf))
	// Bytes, not packets: r1's UDP GSO sends cross the router as
	// aggregates, one packet for several datagrams.
	if fwd, want := router.LinkStat("b0", "tx_bytes"), s.Count*uint64(s.Size); fwd < want {
		t.Errorf("router forwarded %d bytes towards r2, want at least the %d payload bytes", fwd, want)
	}
}
