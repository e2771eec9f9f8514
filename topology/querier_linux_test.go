package topology

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/querier"
	"github.com/mcrelay/mcr/ruleset"
)

// Timers of the snooping segment, short so that the scenarios take
// seconds: the bridge forgets a membership 2 s after the last report
// (mcast_membership_interval, in centiseconds), trusts its table 1 s after
// it first hears a querier (mcast_query_response_interval), and mcrd
// queries every second.
const (
	bridgeMembership = 2 * time.Second
	queryInterval    = "1s"
)

// snoopedSegment is the output side of the relay on a switch that does
// IGMP/MLD snooping but has no querier of its own, and whose receiver
// port does not flood unregistered multicast: the segment the querier is
// for.
//
//	src ── in0 relay out0 ── [br0 snooping, no querier] ── sink0 sink
type snoopedSegment struct {
	sw                    *bridge
	src, relay, sink      *netnstest.NS
	relayPort, sinkPort   string
	sinkAddr4, otherAddr4 string
	relayAddr4            string
	// otherAddr6 is the link-local address of a second querier, lower
	// than any the kernel makes from a MAC address.
	otherAddr6 string
}

func newSnoopedSegment(t *testing.T) *snoopedSegment {
	t.Helper()
	netnstest.RequireTools(t, "the bridge's multicast database and the query mirror", "bridge", "tc")
	s := &snoopedSegment{sinkAddr4: "10.2.0.3", otherAddr4: "10.2.0.1", relayAddr4: "10.2.0.2", otherAddr6: "fe80::1"}
	s.sw = newBridge(t, "qsw", "mcast_snooping", "1", "mcast_querier", "0",
		"mcast_membership_interval", fmt.Sprint(bridgeMembership.Milliseconds()/10),
		"mcast_query_response_interval", "100")
	s.src, s.relay, s.sink = netnstest.New(t, "qsrc"), netnstest.New(t, "qrly"), netnstest.New(t, "qsnk")
	link(t, s.src, srcIf, s.relay, inIf, 1)
	s.relayPort = s.sw.attach(s.relay, outIf, s.relayAddr4+"/24", "fd00:2::2/64")
	s.sinkPort = s.sw.attach(s.sink, sinkIf, s.sinkAddr4+"/24", "fd00:2::3/64")
	s.sw.ns.MustRun("bridge", "link", "set", "dev", s.sinkPort, "mcast_flood", "off")
	// A snooping switch forwards every query to every port (RFC 4541
	// §2.1.1), but a Linux bridge keeps another querier's queries from a
	// port with mcast_flood off (only its own reach it): the mirror plays
	// that part of the switch for the receiver's port.
	s.sw.ns.MustRun("tc", "qdisc", "add", "dev", s.relayPort, "clsact")
	for _, m := range [][]string{{"ip", "ip", "224.0.0.1/32"}, {"ipv6", "ip6", "ff02::1/128"}} {
		s.sw.ns.MustRun("tc", "filter", "add", "dev", s.relayPort, "ingress", "protocol", m[0], "u32",
			"match", m[1], "dst", m[2], "action", "mirred", "egress", "mirror", "dev", s.sinkPort)
	}
	s.relay.WaitIPv6(outIf)
	s.sink.WaitIPv6(sinkIf)
	return s
}

// stop ends the daemon with SIGTERM and waits for it.
func (d *daemon) stop() {
	d.t.Helper()
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatal(err)
	}
	if err := d.proc.Wait(5 * time.Second); err != nil {
		d.t.Fatalf("mcrd after SIGTERM: %v", err)
	}
}

// groups returns `mcrctl groups --interface ifname`.
func (d *daemon) groups(ifname string) controlproto.InterfaceGroups {
	d.t.Helper()
	var list []controlproto.InterfaceGroups
	d.ctlJSON(&list, "groups", "--interface", ifname)
	if len(list) != 1 {
		d.t.Fatalf("mcrctl groups --interface %s: %d interfaces", ifname, len(list))
	}
	return list[0]
}

// family returns the querier state of family ("ipv4", "ipv6") in ig.
func family(t testing.TB, ig controlproto.InterfaceGroups, fam string) controlproto.FamilyQuerier {
	t.Helper()
	for _, f := range ig.Families {
		if f.Family == fam {
			return f
		}
	}
	t.Fatalf("no %s in %+v", fam, ig)
	return controlproto.FamilyQuerier{}
}

// hasGroup reports whether ig lists group.
func hasGroup(ig controlproto.InterfaceGroups, group string) bool {
	for _, g := range ig.Groups {
		if g.Group == group {
			return true
		}
	}
	return false
}

// waitIn waits until rule id has counted at least n datagrams in.
func (d *daemon) waitIn(id string, n uint64) {
	d.t.Helper()
	waitFor(d.t, 10*time.Second, fmt.Sprintf("rule %s to count %d datagrams in", id, n), func() bool {
		return ruleReport(d.t, d.stats(), id).PacketsIn >= n
	})
}

// outputState returns the state GetStats shows for output i of rule id.
func (d *daemon) outputState(id string, i int) string {
	d.t.Helper()
	return ruleReport(d.t, d.stats(), id).Outputs[i].State
}

// TestQuerierKeepsSnoopedReceivers: behind a snooping switch without a
// querier, a receiver gets nothing from the relay; with mcrd as the
// querier its join shows in the switch's table, stays there past the
// switch's membership interval (the relay's queries make the receiver
// report again) and the stream arrives. A querier with a lower address
// silences mcrd, for IGMP and for MLD, which takes over again once it is
// gone, and queries from its new address as soon as its address changes.
func TestQuerierKeepsSnoopedReceivers(t *testing.T) {
	t.Parallel()
	seg := newSnoopedSegment(t)
	r := rule("q", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf))
	s := stream{Interface: srcIf, Group: "239.1.1.1", Port: 5000, Count: 500, Rate: 5000, Size: 200}

	// Without a querier the switch floods the group, but not to the
	// receiver's port.
	d := startDaemon(t, seg.relay, daemonOptions{})
	d.add(r)
	d.waitReady()
	rcv := startRecvUntil(t, seg.sink, sinkIf, "239.2.2.2", 6000, s.Count, 3*time.Second)
	send(t, seg.src, s)
	d.waitIn("q", s.Count)
	if got := rcv.result().Received; got != 0 {
		t.Errorf("without a querier the receiver got %d datagrams; want none (its port does not flood)", got)
	}
	if ig := d.groups(outIf); family(t, ig, "ipv4").Role != "listener" {
		t.Errorf("without --querier: %+v, want role listener", ig.Families)
	}
	d.stop()

	d = startDaemon(t, seg.relay, daemonOptions{Flags: []string{"--querier", outIf, "--query-interval", queryInterval}})
	d.add(r)
	d.waitReady()
	rcv = startRecv(t, seg.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	waitFor(t, 10*time.Second, "the switch to learn the receiver's join", func() bool {
		return seg.sw.mdbPorts("239.2.2.2")[seg.sinkPort]
	})
	joined := time.Now()
	netnstest.Poll(t, 3*bridgeMembership, 100*time.Millisecond, "two membership intervals to pass", func() bool {
		if !seg.sw.mdbPorts("239.2.2.2")[seg.sinkPort] {
			t.Fatalf("the switch forgot the receiver's join %v after it learnt it: the relay's queries did not refresh it",
				time.Since(joined).Round(time.Millisecond))
		}
		return time.Since(joined) > 2*bridgeMembership
	})
	if ig := d.groups(outIf); !hasGroup(ig, "239.2.2.2") || family(t, ig, "ipv4").Role != "querier" {
		t.Errorf("mcrctl groups: %+v; want 239.2.2.2 listed and mcrd the IPv4 querier", ig)
	}
	send(t, seg.src, s)
	checkDelivered(t, "receiver behind the snooping switch", rcv.result(), s.Count, s.Size)

	// Another querier comes, from 10.2.0.1 and fe80::1, lower than the
	// relay's link-local address (made from its MAC): it wins the IPv4 and
	// the MLD election. (The bridge's own querier would not do: it stays
	// silent while it hears another, whatever the addresses.) Its only
	// link-local address is fe80::1, so that it queries from that one.
	rtr := netnstest.New(t, "qrtr")
	seg.sw.attach(rtr, "rtr0", seg.otherAddr4+"/24")
	rtr.MustRun("ip", "-6", "addr", "flush", "dev", "rtr0", "scope", "link")
	rtr.MustRun("ip", "-6", "addr", "add", seg.otherAddr6+"/64", "dev", "rtr0", "nodad")
	var other *querier.Interface
	err := rtr.Do(func() (err error) {
		other, err = querier.Open(rtr.IfIndex("rtr0"), &querier.Config{Querier: true, QueryInterval: time.Second,
			QueryResponseInterval: 500 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
		return err
	})
	if err != nil {
		t.Fatalf("start the other querier: %v", err)
	}
	fams := []struct{ name, other string }{{"ipv4", seg.otherAddr4}, {"ipv6", seg.otherAddr6}}
	silent := map[string]controlproto.FamilyQuerier{}
	waitFor(t, 10*time.Second, "mcrd to defer to the other querier in both families", func() bool {
		ig := d.groups(outIf)
		for _, fam := range fams {
			silent[fam.name] = family(t, ig, fam.name)
			if f := silent[fam.name]; f.Role != "non-querier" || f.Querier != fam.other {
				return false
			}
		}
		return true
	})
	// Two more of the other's queries: a query interval and more, in
	// which mcrd sends none.
	waitFor(t, 10*time.Second, "two more queries from the other querier in both families", func() bool {
		ig := d.groups(outIf)
		heard := true
		for _, fam := range fams {
			f := family(t, ig, fam.name)
			if f.QueriesSent != silent[fam.name].QueriesSent {
				t.Fatalf("mcrd sent %d %s queries while the other was the querier", f.QueriesSent-silent[fam.name].QueriesSent, fam.name)
			}
			heard = heard && f.QueriesReceived >= silent[fam.name].QueriesReceived+2
		}
		return heard
	})
	other.Close()
	waitFor(t, 15*time.Second, "mcrd to query again in both families once the other querier is gone", func() bool {
		ig := d.groups(outIf)
		for _, fam := range fams {
			if f := family(t, ig, fam.name); f.Role != "querier" || f.QueriesSent <= silent[fam.name].QueriesSent {
				return false
			}
		}
		return true
	})

	// The relay's address changes: it queries from the new one at once,
	// on the netlink event, not at its next look every 5 s.
	seg.relay.MustRun("ip", "addr", "del", seg.relayAddr4+"/24", "dev", outIf)
	seg.relay.MustRun("ip", "addr", "add", "10.2.0.4/24", "dev", outIf)
	waitFor(t, 2*time.Second, "mcrd to query from its new address", func() bool {
		f := family(t, d.groups(outIf), "ipv4")
		return f.Address == "10.2.0.4" && f.Querier == "10.2.0.4"
	})
}

// TestWhenJoinedFollowsReceivers: an output with when_joined sends
// nothing before a receiver joins its group on the output interface,
// sends once one has, and stops again after it leaves; over IPv4 (IGMP)
// and IPv6 (MLD), and stays idle through a restart of the workers. The
// querier is set in the config file here, which keeps the setting
// through the saves of the rules added.
func TestWhenJoinedFollowsReceivers(t *testing.T) {
	t.Parallel()
	seg := newSnoopedSegment(t)
	path := filepath.Join(t.TempDir(), "mcr.json")
	querierConfig := ruleset.Querier{Interfaces: []string{outIf}, QueryInterval: queryInterval}
	b, err := ruleset.EncodeConfig(ruleset.Config{Querier: querierConfig})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, seg.relay, daemonOptions{Config: path})
	t.Cleanup(func() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ruleset.DecodeConfig(data)
		if err != nil || !cmp.Equal(c.Querier, querierConfig) || len(c.Rules) != 2 {
			t.Errorf("the saved config holds querier %+v and %d rules (%v); want %+v and 2 rules", c.Querier, len(c.Rules), err, querierConfig)
		}
	})
	for _, tc := range []struct {
		id, inGroup, outGroup, fam string
	}{
		{"v4", "239.1.1.1", "239.2.2.2", "IPv4"},
		{"v6", "239.1.1.2", "ff1e::2", "IPv6"},
	} {
		t.Run(tc.fam, func(t *testing.T) {
			o := out(tc.outGroup, 6000, outIf)
			o.WhenJoined = true
			d.add(rule(tc.id, inIf, tc.inGroup, 5000, o))
			d.waitReady()
			s := stream{Interface: srcIf, Group: tc.inGroup, Port: 5000, Count: 300, Rate: 5000, Size: 200}
			if got := d.outputState(tc.id, 0); got != controlproto.StateIdle {
				t.Fatalf("output state before any join = %q, want idle", got)
			}

			// Nothing leaves out0 before the first join: its packet
			// count grows by the queries at most, not by the stream.
			tx := seg.relay.LinkStat(outIf, "tx_packets")
			send(t, seg.src, s)
			d.waitIn(tc.id, s.Count)
			if got := seg.relay.LinkStat(outIf, "tx_packets") - tx; got >= s.Count/10 {
				t.Errorf("%d packets left %s during a stream of %d with no receiver", got, outIf, s.Count)
			}
			rr := ruleReport(t, d.stats(), tc.id)
			if o := rr.Outputs[0]; o.PacketsOut != 0 || o.Errors != 0 || o.NotSentIdle != s.Count {
				t.Errorf("idle output counted %d sent, %d errors, %d not sent while idle; want 0, 0, %d",
					o.PacketsOut, o.Errors, o.NotSentIdle, s.Count)
			}

			// A receiver joins: the output turns active and the
			// stream arrives.
			rcv := startRecv(t, seg.sink, sinkIf, tc.outGroup, 6000, s.Count)
			waitFor(t, 10*time.Second, "the output to turn active after the join", func() bool {
				return d.outputState(tc.id, 0) == controlproto.StateActive
			})
			d.waitReady() // the workers hold the active output
			if ig := d.groups(outIf); !hasGroup(ig, tc.outGroup) {
				t.Errorf("mcrctl groups does not list %s: %+v", tc.outGroup, ig.Groups)
			}
			waitFor(t, 10*time.Second, "the switch to forward "+tc.outGroup+" to the receiver", func() bool {
				return seg.sw.mdbPorts(tc.outGroup)[seg.sinkPort]
			})
			base := ruleReport(t, d.stats(), tc.id)
			send(t, seg.src, s)
			checkDelivered(t, "receiver of the when_joined output", rcv.result(), s.Count, s.Size)
			d.checkCountedSince(base, tc.id, s.Count, s.Size, dest(tc.outGroup, 6000, outIf))

			// The receiver left when it ended: the output is idle
			// again within the last member query time, and sends
			// nothing more.
			waitFor(t, 10*time.Second, "the output to turn idle after the leave", func() bool {
				return d.outputState(tc.id, 0) == controlproto.StateIdle
			})
			d.waitReady() // the workers hold the idle output
			if tc.fam == "IPv4" {
				// The workers' replacements get the output idle too.
				d.killWorkers()
			}
			out := ruleReport(t, d.stats(), tc.id).Outputs[0].PacketsOut
			tx = seg.relay.LinkStat(outIf, "tx_packets")
			send(t, seg.src, s)
			d.waitIn(tc.id, base.PacketsIn+2*s.Count)
			if got := seg.relay.LinkStat(outIf, "tx_packets") - tx; got >= s.Count/10 {
				t.Errorf("%d packets left %s during a stream of %d after the receiver left", got, outIf, s.Count)
			}
			if got := ruleReport(t, d.stats(), tc.id).Outputs[0].PacketsOut; got != out {
				t.Errorf("the output sent %d datagrams after the receiver left", got-out)
			}
		})
	}
}
