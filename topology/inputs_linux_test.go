package topology

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/mcrgen"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// TestIPv6Baseline relays over one hop with IPv6 on either side or both:
// MLD joins, IPv6 egress, and translation across families.
func TestIPv6Baseline(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	cases := []struct {
		name, in, out string
	}{
		{"v6 to v6", "ff1e::1:1", "ff1e::2:1"},
		{"v4 to v6", "239.1.1.2", "ff1e::2:2"},
		{"v6 to v4", "ff1e::1:3", "239.2.2.3"},
	}
	for i, tc := range cases {
		d.add(rule(fmt.Sprintf("case%d", i), inIf, tc.in, 5000, out(tc.out, 6000, outIf)))
	}
	d.waitReady()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(srcIf, tc.in, 5000)
			r := startRecv(t, l.sink, sinkIf, tc.out, 6000, s.Count)
			send(t, l.src, s)
			checkDelivered(t, "sink", r.result(), s.Count, s.Size)
			d.checkCounted(fmt.Sprintf("case%d", i), s.Count, s.Size, dest(tc.out, 6000, outIf))
		})
	}
}

// TestVXLANInput relays a group that arrives inside a vxlan tunnel: the
// relay's input is the vxlan device, over a veth underlay.
//
//	src vx0 10.10.0.1 ═(vxlan 42 over u0 10.1.0.1 → 10.1.0.2)═ relay vx0 10.10.0.2 ─ out0 ─ sink
func TestVXLANInput(t *testing.T) {
	t.Parallel()
	src, relay, sink := netnstest.New(t, "src"), netnstest.New(t, "rly"), netnstest.New(t, "snk")
	link(t, src, "u0", relay, "u0", 1)
	link(t, relay, outIf, sink, sinkIf, 2)
	for _, end := range []struct {
		ns                  *netnstest.NS
		local, remote, addr string
	}{
		{src, "10.1.0.1", "10.1.0.2", "10.10.0.1/24"},
		{relay, "10.1.0.2", "10.1.0.1", "10.10.0.2/24"},
	} {
		end.ns.MustRun("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", end.local,
			"remote", end.remote, "dstport", "4789", "dev", "u0")
		end.ns.SetupLink("vx0", end.addr)
	}
	d := startDaemon(t, relay, daemonOptions{})
	d.add(rule("vxlan", "vx0", "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream("vx0", "239.1.1.1", 5000) // 1,000 bytes fit the vxlan MTU of 1,450
	r := startRecv(t, sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, src, s)

	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted("vxlan", s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
}

// TestTunInput relays a group that arrives on a tun device, the way a
// WireGuard-style L3 tunnel delivers it: the test owns the device and
// writes whole IPv4 packets into it, carrying mcrgen payloads.
func TestTunInput(t *testing.T) {
	t.Parallel()
	relay, sink := netnstest.New(t, "rly"), netnstest.New(t, "snk")
	tun := openTun(t, relay, "tun0")
	relay.SetupLink("tun0", "10.11.0.2/24")
	link(t, relay, outIf, sink, sinkIf, 2)
	d := startDaemon(t, relay, daemonOptions{})
	d.add(rule("tun", "tun0", "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	const n, size = 2000, 1000
	r := startRecv(t, sink, sinkIf, "239.2.2.2", 6000, n)
	from, to := netip.MustParseAddrPort("10.11.0.1:40000"), netip.MustParseAddrPort("239.1.1.1:5000")
	payload := make([]byte, size)
	for seq := range uint64(n) {
		mcrgen.FillPayload(payload, mcrgen.Header{Stream: 1, Seq: seq, SentUnixNano: time.Now().UnixNano()})
		if _, err := tun.Write(packettest.BuildUDP4(from, to, payload)); err != nil {
			t.Fatalf("write packet %d into tun0: %v", seq, err)
		}
		if seq%20 == 19 { // about 10,000 a second
			time.Sleep(2 * time.Millisecond)
		}
	}

	checkDelivered(t, "sink", r.result(), n, size)
	d.checkCounted("tun", n, size, dest("239.2.2.2", 6000, outIf))
}

// openTun creates tun device name (IFF_TUN, no packet information header)
// in ns and returns the file its packets are written to. The device lives
// as long as the file is open: until the test ends.
func openTun(t *testing.T, ns *netnstest.NS, name string) *os.File {
	t.Helper()
	var f *os.File
	// The device is created in the network namespace of the thread that
	// sets it up (TUNSETIFF).
	if err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun")
		return nil
	}); err != nil {
		t.Fatalf("create %s in %s: %v", name, ns.Name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFiveThousandGroups loads 5,000 rules on distinct groups of one
// interface from --config, with the kernel's default cap of 20 memberships
// per socket in force: all 5,000 groups are joined, and one datagram sent
// to each group arrives, all 5,000 merged into one output stream.
func TestFiveThousandGroups(t *testing.T) {
	t.Parallel()
	const groups = 5000
	l := newLine(t)
	l.relay.MustRun("sysctl", "-qw", "net.ipv4.igmp_max_memberships=20")
	group := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{239, 100, byte(i / 250), byte(i%250 + 1)}) }
	rules := make([]ruleset.Rule, groups)
	for i := range rules {
		rules[i] = rule(fmt.Sprintf("g%d", i), inIf, group(i).String(), 5000, out("239.2.2.2", 6000, outIf))
	}
	path := filepath.Join(t.TempDir(), "mcr.json")
	writeConfig(t, path, rules...)
	start := time.Now()
	d := startDaemon(t, l.relay, daemonOptions{Config: path})
	t.Logf("5,000 rules loaded, active and in sync after %v", time.Since(start).Round(time.Millisecond))

	joined := joinedGroups(t, l.relay, inIf)
	missing := 0
	for i := range groups {
		if !joined[group(i)] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d groups not joined on %s", missing, groups, inIf)
	}

	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, groups)
	tx := dialMulticast(t, l.src, srcIf)
	payload := make([]byte, 100)
	for i := range groups {
		mcrgen.FillPayload(payload, mcrgen.Header{Stream: 1, Seq: uint64(i), SentUnixNano: time.Now().UnixNano()})
		if _, err := tx.WriteTo(payload, nil, &net.UDPAddr{IP: group(i).AsSlice(), Port: 5000}); err != nil {
			t.Fatalf("send to %s: %v", group(i), err)
		}
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond)
		}
	}

	checkDelivered(t, "sink of all groups", r.result(), groups, len(payload))
	// A datagram is counted in when it is dispatched and out when its
	// send completes, which a snapshot may not have seen yet.
	waitFor(t, 5*time.Second, "the relay to count all datagrams in and out", func() bool {
		tot := d.stats().Totals
		return tot.PacketsIn >= groups && tot.PacketsOut >= groups
	})
	bad := 0
	for _, rr := range d.stats().Rules {
		if rr.PacketsIn != 1 || rr.BytesIn != uint64(len(payload)) || rr.Outputs[0].PacketsOut != 1 {
			if bad++; bad <= 5 {
				t.Errorf("rule %s counted %+v, want one datagram of %d bytes in and out", rr.ID, rr, len(payload))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d rules did not count exactly their one datagram", bad, groups)
	}
}
