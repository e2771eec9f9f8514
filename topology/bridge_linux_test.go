package topology

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// bridge is a Linux bridge br0 alone in a namespace: a stand-in for a
// switch. Hosts attach to it with veth pairs.
type bridge struct {
	t     *testing.T
	ns    *netnstest.NS
	ports int
}

// newBridge creates br0 with the given `ip link add … type bridge`
// settings and sets it up.
func newBridge(t *testing.T, prefix string, settings ...string) *bridge {
	t.Helper()
	b := &bridge{t: t, ns: netnstest.New(t, prefix)}
	b.ns.MustRun("ip", append([]string{"link", "add", "br0", "type", "bridge"}, settings...)...)
	b.ns.MustRun("ip", "link", "set", "br0", "up")
	return b
}

// attach plugs ifname of host, with addrs, into a new port of the bridge
// and returns the port's name.
func (b *bridge) attach(host *netnstest.NS, ifname string, addrs ...string) string {
	b.t.Helper()
	port := fmt.Sprintf("port%d", b.ports)
	b.ports++
	netnstest.Veth(b.t, b.ns, port, nil, host, ifname, addrs)
	b.ns.MustRun("ip", "link", "set", port, "master", "br0")
	return port
}

// mdbPorts returns the bridge ports its multicast database lists as
// members of group.
func (b *bridge) mdbPorts(group string) map[string]bool {
	b.t.Helper()
	var dump []struct {
		MDB []struct {
			Port string `json:"port"`
			Grp  string `json:"grp"`
		} `json:"mdb"`
	}
	out := b.ns.MustRun("bridge", "-j", "mdb", "show")
	if err := json.Unmarshal([]byte(out), &dump); err != nil {
		b.t.Fatalf("decode `bridge -j mdb show` %q: %v", out, err)
	}
	ports := map[string]bool{}
	for _, d := range dump {
		for _, e := range d.MDB {
			if e.Grp == group {
				ports[e.Port] = true
			}
		}
	}
	return ports
}

// TestTwoSegmentsAcrossBridges extends a group from one L2 segment into
// another: two bridges, nothing between them but the relay, which
// republishes 239.1.1.1:5000 from segment A unchanged on segment B, where
// two hosts receive it.
//
//	src ─ [brA] ─ in0 relay out0 ─ [brB] ┬ sink1
//	                                     └ sink2
func TestTwoSegmentsAcrossBridges(t *testing.T) {
	t.Parallel()
	segA, segB := newBridge(t, "brA"), newBridge(t, "brB")
	src, relay := netnstest.New(t, "src"), netnstest.New(t, "rly")
	sinks := []*netnstest.NS{netnstest.New(t, "snk1"), netnstest.New(t, "snk2")}
	segA.attach(src, srcIf, "10.1.0.1/24")
	segA.attach(relay, inIf, "10.1.0.2/24")
	segB.attach(relay, outIf, "10.2.0.1/24")
	for i, ns := range sinks {
		segB.attach(ns, sinkIf, fmt.Sprintf("10.2.0.%d/24", i+2))
	}
	d := startDaemon(t, relay, daemonOptions{})
	d.add(rule("extend", inIf, "239.1.1.1", 5000, out("239.1.1.1", 5000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	receivers := make([]*receiver, len(sinks))
	for i, ns := range sinks {
		receivers[i] = startRecv(t, ns, sinkIf, "239.1.1.1", 5000, s.Count)
	}
	send(t, src, s)

	for i, r := range receivers {
		checkDelivered(t, fmt.Sprintf("sink %d on segment B", i+1), r.result(), s.Count, s.Size)
	}
	d.checkCounted("extend", s.Count, s.Size, dest("239.1.1.1", 5000, outIf))
}

// TestSnoopingBridge puts the relay behind a bridge that does IGMP
// snooping, the stand-in for a real switch: mcast_snooping on, its own
// querier, and mcast_flood off on the relay's port, so that the bridge
// sends the relay a group only once the relay has joined it. A bystander
// host shows that the bridge then keeps each group to its members: the
// relay's group does not reach the bystander, and a group the bystander
// joins does not reach the relay.
//
//	src ─┐
//	     [br0 snooping] ── in0 relay out0 ── sink
//	by  ─┘
func TestSnoopingBridge(t *testing.T) {
	t.Parallel()
	// The bridge trusts its membership table only once its querier has
	// existed for a query response interval (br_multicast_querier_exists):
	// 10 s by default, 1 s here. It is set before the querier is enabled,
	// which is when the kernel reads it.
	sw := newBridge(t, "sw", "mcast_snooping", "1", "mcast_query_response_interval", "100")
	sw.ns.MustRun("ip", "link", "set", "br0", "type", "bridge", "mcast_querier", "1")
	src, relay, by, sink := netnstest.New(t, "src"), netnstest.New(t, "rly"), netnstest.New(t, "by"), netnstest.New(t, "snk")
	sw.attach(src, srcIf, "10.1.0.1/24")
	relayPort := sw.attach(relay, inIf, "10.1.0.2/24")
	byPort := sw.attach(by, "by0", "10.1.0.3/24")
	sw.ns.MustRun("bridge", "link", "set", "dev", relayPort, "mcast_flood", "off")
	link(t, relay, outIf, sink, sinkIf, 2)

	d := startDaemon(t, relay, daemonOptions{})
	d.add(rule("snooped", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	waitFor(t, 10*time.Second, "the bridge to learn the relay's join of 239.1.1.1", func() bool {
		return sw.mdbPorts("239.1.1.1")[relayPort]
	})
	// Probe until the bridge acts on what it learnt: a few datagrams to the
	// joined group on a port no rule matches reach the relay's interface.
	probe := stream{Interface: srcIf, Group: "239.1.1.1", Port: 5999, Count: 5, Rate: 1000, Size: 100}
	waitFor(t, 20*time.Second, "the bridge to forward the joined group to the relay", func() bool {
		before := relay.LinkStat(inIf, "rx_packets")
		send(t, src, probe)
		return relay.LinkStat(inIf, "rx_packets")-before >= probe.Count
	})

	s := newStream(srcIf, "239.1.1.1", 5000)
	r := startRecv(t, sink, sinkIf, "239.2.2.2", 6000, s.Count)
	byBefore := by.LinkStat("by0", "rx_packets")
	send(t, src, s)
	checkDelivered(t, "sink behind the snooping bridge", r.result(), s.Count, s.Size)
	d.checkCounted("snooped", s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
	if got := by.LinkStat("by0", "rx_packets") - byBefore; got >= s.Count/10 {
		t.Errorf("the bystander port received %d packets during a stream of %d to a group it did not join", got, s.Count)
	}

	// A group only the bystander joined reaches the bystander, not the relay.
	other := stream{Interface: srcIf, Group: "239.1.1.7", Port: 5000, Count: 200, Rate: 10000, Size: 100}
	br := startRecv(t, by, "by0", other.Group, other.Port, other.Count)
	waitFor(t, 10*time.Second, "the bridge to learn the bystander's join of "+other.Group, func() bool {
		return sw.mdbPorts(other.Group)[byPort]
	})
	relayBefore := relay.LinkStat(inIf, "rx_packets")
	send(t, src, other)
	checkDelivered(t, "bystander", br.result(), other.Count, other.Size)
	if got := relay.LinkStat(inIf, "rx_packets") - relayBefore; got >= other.Count/10 {
		t.Errorf("the relay's port received %d packets of %d sent to a group only the bystander joined", got, other.Count)
	}
}
