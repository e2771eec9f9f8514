package querier

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// fastConfig makes the protocol run in seconds: queries every second, Last
// Member Query Time 400 ms, Other Querier Present Interval 2.25 s.
func fastConfig(querier bool) *Config {
	return &Config{
		Querier:                 querier,
		QueryInterval:           time.Second,
		QueryResponseInterval:   500 * time.Millisecond,
		LastMemberQueryInterval: 200 * time.Millisecond,
	}
}

// running is an Interface opened inside a test namespace, with the events
// it delivered.
type running struct {
	*Interface
	mu     sync.Mutex
	events []Event
}

func (r *running) eventKinds(group netip.Addr) []EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []EventKind
	for _, ev := range r.events {
		if ev.Group == group {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// openIn opens an Interface on ifname inside ns and closes it when the
// test ends.
func openIn(t *testing.T, ns *netnstest.NS, ifname string, cfg *Config) *running {
	t.Helper()
	r := &running{}
	idx := ns.IfIndex(ifname)
	err := ns.Do(func() (err error) {
		r.Interface, err = Open(idx, cfg, func(ev Event) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return err
	})
	if err != nil {
		t.Fatalf("open IGMP/MLD on %s in %s: %v", ifname, ns.Name, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (r *running) group(g netip.Addr) (Group, bool) {
	for _, x := range r.Groups() {
		if x.Group == g {
			return x, true
		}
	}
	return Group{}, false
}

// join makes a socket inside ns join group on ifname — from sources only,
// when given — so that the kernel of ns sends the reports. Closing the
// returned socket leaves.
func join(t *testing.T, ns *netnstest.NS, ifname string, group netip.Addr, sources ...netip.Addr) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		network := "udp4"
		if group.Is6() {
			network = "udp6"
		}
		if c, err = net.ListenPacket(network, ":0"); err != nil {
			return err
		}
		g := &net.UDPAddr{IP: group.AsSlice()}
		switch {
		case group.Is4() && len(sources) == 0:
			err = ipv4.NewPacketConn(c).JoinGroup(ifi, g)
		case group.Is4():
			err = ipv4.NewPacketConn(c).JoinSourceSpecificGroup(ifi, g, &net.UDPAddr{IP: sources[0].AsSlice()})
		case len(sources) == 0:
			err = ipv6.NewPacketConn(c).JoinGroup(ifi, g)
		default:
			err = ipv6.NewPacketConn(c).JoinSourceSpecificGroup(ifi, g, &net.UDPAddr{IP: sources[0].AsSlice()})
		}
		return err
	})
	if err != nil {
		t.Fatalf("join %v on %s in %s: %v", group, ifname, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// forceVersion makes the hosts of ns speak IGMP version v4 and MLD version
// v6 (0: the newest they know).
func forceVersion(ns *netnstest.NS, v4, v6 int) {
	ns.MustRun("sysctl", "-qw", fmt.Sprintf("net.ipv4.conf.all.force_igmp_version=%d", v4),
		fmt.Sprintf("net.ipv6.conf.all.force_mld_version=%d", v6))
}

// linkLocal returns the link-local address of ifname in ns.
func linkLocal(t *testing.T, ns *netnstest.NS, ifname string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	netnstest.WaitFor(t, 5*time.Second, "a link-local address on "+ifname, func() bool {
		out := ns.MustRun("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
		f := strings.Fields(out)
		for i := range f {
			if f[i] == "inet6" && i+1 < len(f) && !strings.Contains(out, "tentative") {
				ll = netip.MustParsePrefix(f[i+1]).Addr()
				return true
			}
		}
		return false
	})
	return ll
}

// TestListenerTableFromKernelReports: a host joins groups with each
// version of IGMP and MLD its kernel speaks, and the table shows each
// group with its filter, version and reporter.
func TestListenerTableFromKernelReports(t *testing.T) {
	t.Parallel()
	src4, src6 := a("192.0.2.7"), a("2001:db8::7")
	tests := []struct {
		name       string
		igmp, mld  int // forced versions
		group      netip.Addr
		sources    []netip.Addr
		wantFilter Filter
		wantCompat Protocol
	}{
		{"IGMPv3 any source", 0, 0, a("239.5.0.1"), nil, Filter{Mode: Exclude}, IGMPv3},
		{"IGMPv3 source-specific", 0, 0, a("232.5.0.1"), []netip.Addr{src4}, Filter{Mode: Include, Sources: []netip.Addr{src4}}, IGMPv3},
		{"IGMPv2", 2, 0, a("239.5.0.2"), nil, Filter{Mode: Exclude}, IGMPv2},
		{"IGMPv1", 1, 0, a("239.5.0.3"), nil, Filter{Mode: Exclude}, IGMPv1},
		{"MLDv2 any source", 0, 0, a("ff3e::5:1"), nil, Filter{Mode: Exclude}, MLDv2},
		{"MLDv2 source-specific", 0, 0, a("ff3e::5:2"), []netip.Addr{src6}, Filter{Mode: Include, Sources: []netip.Addr{src6}}, MLDv2},
		{"MLDv1", 0, 1, a("ff3e::5:3"), nil, Filter{Mode: Exclude}, MLDv1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rly, rcv := netnstest.New(t, "qrly"), netnstest.New(t, "qrcv")
			netnstest.Veth(t, rly, "q0", []string{"10.51.0.1/24"}, rcv, "h0", []string{"10.51.0.2/24"})
			forceVersion(rcv, tc.igmp, tc.mld)
			reporter := a("10.51.0.2")
			if tc.group.Is6() {
				reporter = linkLocal(t, rcv, "h0")
			}
			q := openIn(t, rly, "q0", nil)
			join(t, rcv, "h0", tc.group, tc.sources...)
			var got Group
			netnstest.WaitFor(t, 5*time.Second, fmt.Sprintf("%v in the listener table", tc.group), func() bool {
				var ok bool
				got, ok = q.group(tc.group)
				return ok
			})
			if !got.Filter.Equal(tc.wantFilter) || got.Compat != tc.wantCompat || got.Reporter != reporter {
				t.Errorf("group %v: filter %v, compat %v, reporter %v; want %v, %v, %v",
					tc.group, got.Filter, got.Compat, got.Reporter, tc.wantFilter, tc.wantCompat, reporter)
			}
			other := a("192.0.2.99")
			if tc.group.Is6() {
				other = a("2001:db8::99")
			}
			if want := tc.wantFilter.Mode == Exclude; q.Allowed(tc.group, other) != want {
				t.Errorf("Allowed(%v, %v) = %v, want %v", tc.group, other, !want, want)
			}
			if len(tc.sources) > 0 && !q.Allowed(tc.group, tc.sources[0]) {
				t.Errorf("Allowed(%v, %v) = false for the source the host asked for", tc.group, tc.sources[0])
			}
			if kinds := q.eventKinds(tc.group); len(kinds) == 0 || kinds[0] != Joined {
				t.Errorf("events for %v: %v, want Joined first", tc.group, kinds)
			}
		})
	}
}

// snoopingBridge is the stand-in for a snooping switch without a querier:
// br0 in its own namespace with IGMP/MLD snooping on, its own querier off,
// memberships that time out after membershipCS centiseconds, and a
// receiver on port0, which does not flood unregistered multicast. br0 has
// 10.52.0.254/24 and a link-local address; the receiver 10.52.0.2/24.
type snoopingBridge struct {
	sw, rcv *netnstest.NS
	ll      netip.Addr // br0's link-local address
}

func newSnoopingBridge(t *testing.T, membershipCS int) *snoopingBridge {
	t.Helper()
	b := &snoopingBridge{sw: netnstest.New(t, "qsw"), rcv: netnstest.New(t, "qrcv")}
	b.sw.MustRun("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "0",
		"mcast_membership_interval", fmt.Sprint(membershipCS))
	b.sw.SetupLink("br0", "10.52.0.254/24")
	netnstest.Veth(t, b.sw, "port0", nil, b.rcv, "h0", []string{"10.52.0.2/24"})
	b.sw.MustRun("ip", "link", "set", "port0", "master", "br0")
	b.sw.MustRun("bridge", "link", "set", "dev", "port0", "mcast_flood", "off")
	b.ll = linkLocal(t, b.sw, "br0")
	return b
}

// inMDB reports whether br0's multicast database lists port0 for group.
func (b *snoopingBridge) inMDB(group netip.Addr) bool {
	out := b.sw.MustRun("bridge", "mdb", "show", "dev", "br0")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "port" && f[i+1] == "port0" && strings.Contains(line, " grp "+group.String()+" ") {
				return true
			}
		}
	}
	return false
}

// TestQuerierKeepsSnoopingMembership: with our querier on the bridge, the
// receiver's membership stays in the bridge's table past the bridge's
// membership interval, because our queries make the receiver report
// again; without it, it times out. A leave is followed by group-specific
// queries and the group leaves our table after the Last Member Query Time.
func TestQuerierKeepsSnoopingMembership(t *testing.T) {
	t.Parallel()
	// Three query intervals: room for a report to come late on a loaded
	// machine, and still short.
	const membership = 3 * time.Second
	for _, tc := range []struct {
		name    string
		group   netip.Addr
		igmp    int
		mld     int
		querier bool
	}{
		{"IGMPv3", a("239.6.0.1"), 0, 0, true},
		{"IGMPv2", a("239.6.0.2"), 2, 0, true},
		{"MLDv2", a("ff3e::6:1"), 0, 0, true},
		{"MLDv1", a("ff3e::6:2"), 0, 1, true},
		{"IGMPv3 without querier", a("239.6.0.3"), 0, 0, false},
		{"MLDv2 without querier", a("ff3e::6:3"), 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newSnoopingBridge(t, int(membership/(10*time.Millisecond)))
			forceVersion(b.rcv, tc.igmp, tc.mld)
			q := openIn(t, b.sw, "br0", fastConfig(tc.querier))
			if tc.querier {
				netnstest.WaitFor(t, 5*time.Second, "our querier to start", func() bool {
					st, _, _ := q.Status()
					return st[0].Role == Querier && st[1].Role == Querier
				})
			}
			conn := join(t, b.rcv, "h0", tc.group)
			netnstest.Poll(t, 5*time.Second, 50*time.Millisecond, "the bridge to learn the join", func() bool { return b.inMDB(tc.group) })
			if !tc.querier {
				// The control: nothing refreshes the membership.
				netnstest.Poll(t, membership+3*time.Second, 100*time.Millisecond, "the membership to time out without a querier",
					func() bool { return !b.inMDB(tc.group) })
				return
			}
			// Our queries keep it: watch it for longer than the
			// bridge's membership interval.
			// An entry that timed out stays gone until the next report
			// (a query's response time, 500 ms, at least): two misses
			// in a row, 100 ms apart, are a drop; one alone is a dump
			// that raced the entry's refresh on a loaded machine.
			missed := 0
			for end := time.Now().Add(membership + time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				if b.inMDB(tc.group) {
					missed = 0
					continue
				}
				if missed++; missed == 2 {
					t.Fatalf("the bridge dropped the membership of %v despite our queries:\n%s", tc.group,
						b.sw.MustRun("bridge", "-d", "mdb", "show", "dev", "br0"))
				}
			}
			if _, ok := q.group(tc.group); !ok {
				t.Fatalf("%v not in our listener table", tc.group)
			}
			st, _, _ := q.Status()
			fam := 0
			if tc.group.Is6() {
				fam = 1
			}
			sentBefore := st[fam].Counters.QueriesSent
			conn.Close() // leave
			// RFC 3376 §6.6.3.1: the leave lowers the group timer to
			// the Last Member Query Time (400 ms). Reports keep it
			// above 1.5 s (GMI 2.5 s, a query every second), so a
			// timer below 1 s shows the leave was taken.
			netnstest.WaitFor(t, 2*time.Second, "the leave to lower the group timer", func() bool {
				g, ok := q.group(tc.group)
				return !ok || g.Expires.Before(time.Now().Add(time.Second))
			})
			netnstest.WaitFor(t, 3*time.Second, fmt.Sprintf("%v to leave our table", tc.group), func() bool {
				_, ok := q.group(tc.group)
				return !ok
			})
			st, _, _ = q.Status()
			if st[fam].Counters.QueriesSent-sentBefore < 2 {
				t.Errorf("sent %d queries after the leave, want at least the 2 group-specific ones", st[fam].Counters.QueriesSent-sentBefore)
			}
			if kinds := q.eventKinds(tc.group); len(kinds) < 2 || kinds[0] != Joined || kinds[len(kinds)-1] != Left {
				t.Errorf("events for %v: %v, want Joined ... Left", tc.group, kinds)
			}
		})
	}
}

// TestElectionOnTheLink: a second querier with a lower address on the
// link silences ours; when it goes away, ours resumes after the Other
// Querier Present Interval.
func TestElectionOnTheLink(t *testing.T) {
	t.Parallel()
	for _, fam := range []Family{IPv4, IPv6} {
		t.Run(fam.String(), func(t *testing.T) {
			t.Parallel()
			b := newSnoopingBridge(t, 26000)
			other := netnstest.New(t, "qoth")
			netnstest.Veth(t, b.sw, "port1", nil, other, "o0", []string{"10.52.0.9/24"})
			b.sw.MustRun("ip", "link", "set", "port1", "master", "br0")
			// A link-local address below br0's, whatever the kernel
			// generated for it.
			other.MustRun("ip", "-6", "addr", "flush", "dev", "o0", "scope", "link")
			other.MustRun("ip", "addr", "add", "fe80::9/64", "dev", "o0", "nodad")
			lower := a("10.52.0.9")
			if fam == IPv6 {
				lower = a("fe80::9")
			}
			n := int(fam) - 1

			ours := openIn(t, b.sw, "br0", fastConfig(true))
			netnstest.WaitFor(t, 5*time.Second, "our querier to start", func() bool {
				st, _, _ := ours.Status()
				return st[n].Role == Querier
			})
			theirs := openIn(t, other, "o0", fastConfig(true))
			netnstest.WaitFor(t, 5*time.Second, "ours to yield to "+lower.String(), func() bool {
				st, _, _ := ours.Status()
				return st[n].Role == NonQuerier && st[n].Querier == lower
			})
			// While the other querier wins, ours sends nothing, and the
			// winner hears nothing from it. (The pause first lets a
			// query that ours sent just before it yielded arrive.)
			time.Sleep(300 * time.Millisecond)
			oursSt, _, _ := ours.Status()
			theirsSt, _, _ := theirs.Status()
			time.Sleep(2 * time.Second) // two query intervals
			oursNow, _, _ := ours.Status()
			theirsNow, _, _ := theirs.Status()
			if got := oursNow[n].Counters.QueriesSent - oursSt[n].Counters.QueriesSent; got != 0 {
				t.Errorf("ours sent %d queries while the other querier won", got)
			}
			if got := theirsNow[n].Counters.QueriesReceived - theirsSt[n].Counters.QueriesReceived; got != 0 {
				t.Errorf("the winning querier heard %d queries from ours while it won", got)
			}
			if theirsNow[n].Role != Querier {
				t.Errorf("the lower-addressed querier's role is %v, want Querier", theirsNow[n].Role)
			}
			// Ours takes over when its Other Querier Present timer,
			// renewed by each query it heard, runs out: at most 2 × 1 s
			// + 0.5 s / 2 after the other went away, and not before.
			expires := oursNow[n].QuerierExpires
			theirs.Close()
			gone := time.Now()
			if d := expires.Sub(gone); d > 2250*time.Millisecond {
				t.Errorf("the other querier counts as present until %v after it went away, want at most 2.25 s", d)
			}
			netnstest.WaitFor(t, 5*time.Second, "ours to resume", func() bool {
				st, _, _ := ours.Status()
				return st[n].Role == Querier
			})
			if early := time.Until(expires); early > 0 {
				t.Errorf("ours resumed %v before its Other Querier Present timer ran out", early)
			}
		})
	}
}
