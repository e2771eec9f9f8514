package membership

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// openIn returns an Opener that opens helper sockets inside ns. A
// socket belongs to the namespace it was created in, so joins on it work
// from any thread.
func openIn(ns *netnstest.NS) Opener {
	return func(ifindex int, v6 bool) (Socket, error) {
		var s Socket
		err := ns.Do(func() (err error) {
			s, err = OpenUDP(ifindex, v6)
			return err
		})
		return s, err
	}
}

// countMaddrs counts the groups `ip maddr show dev ifname` lists with the
// given prefix ("inet  239.": iproute2 pads "inet" to the width of "inet6").
func countMaddrs(ns *netnstest.NS, ifname, prefix string) int {
	return strings.Count(ns.MustRun("ip", "maddr", "show", "dev", ifname), prefix)
}

func TestMembershipsKernelJoins5000GroupsPerFamily(t *testing.T) {
	a, b := netnstest.New(t, "ma"), netnstest.New(t, "mb")
	netnstest.Veth(t, a, "mcra0", nil, b, "mcrb0", nil)
	ifindex := a.IfIndex("mcra0")
	m := New(openIn(a))
	t.Cleanup(func() { m.Close() })

	const n = 5000
	start := time.Now()
	for i := range n {
		g4 := netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)})
		g6 := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x3e, 14: byte(i >> 8), 15: byte(i)})
		for _, g := range []netip.Addr{g4, g6} {
			if err := m.Join(Group{Ifindex: ifindex, Addr: g}); err != nil {
				t.Fatalf("join %s: %v", g, err)
			}
		}
	}
	groups, sockets := m.Count()
	t.Logf("%d groups joined in %v on %d helper sockets", groups, time.Since(start).Round(time.Millisecond), sockets)
	if got := countMaddrs(a, "mcra0", "inet  239."); got != n {
		t.Errorf("kernel lists %d IPv4 groups on mcra0, want %d", got, n)
	}
	if got := countMaddrs(a, "mcra0", "inet6 ff3e:"); got != n {
		t.Errorf("kernel lists %d IPv6 groups on mcra0, want %d", got, n)
	}
	// igmp_max_memberships is 20 in a fresh namespace.
	if v4sockets := len(m.pools[poolKey{ifindex, false}]); v4sockets != n/20 {
		t.Errorf("IPv4 groups on %d sockets, want %d (20 each)", v4sockets, n/20)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := countMaddrs(a, "mcra0", "inet  239.") + countMaddrs(a, "mcra0", "inet6 ff3e:"); got != 0 {
		t.Errorf("kernel still lists %d groups after close", got)
	}
}

func TestMembershipsSourceSpecificInKernel(t *testing.T) {
	a, b := netnstest.New(t, "ma"), netnstest.New(t, "mb")
	netnstest.Veth(t, a, "mcra0", nil, b, "mcrb0", nil)
	ifindex := a.IfIndex("mcra0")
	m := New(openIn(a))
	t.Cleanup(func() { m.Close() })
	joins := []Group{
		{Ifindex: ifindex, Addr: netip.MustParseAddr("232.1.1.1"), Source: netip.MustParseAddr("10.9.0.2")},
		{Ifindex: ifindex, Addr: netip.MustParseAddr("ff3e::8000:1"), Source: netip.MustParseAddr("fd00::2")},
	}
	for _, g := range joins {
		if err := m.Join(g); err != nil {
			t.Fatalf("join %v: %v", g, err)
		}
	}
	// /proc/net/mcfilter and mcfilter6 list the source filters: group
	// and source in hex. The kernel may publish the IPv6 filter a moment
	// after the join returns (seen once in a full run), so wait for both.
	netnstest.WaitFor(t, 2*time.Second, "source filters of both joins in /proc/net/mcfilter{,6}", func() bool {
		v4 := a.MustRun("cat", "/proc/net/mcfilter")
		v6 := a.MustRun("cat", "/proc/net/mcfilter6")
		return strings.Contains(v4, "0xe8010101 0x0a090002") &&
			strings.Contains(v6, "ff3e0000000000000000000080000001 fd000000000000000000000000000002")
	})
	for _, g := range joins {
		if err := m.Leave(g); err != nil {
			t.Errorf("leave %v: %v", g, err)
		}
	}
	if v4 := a.MustRun("cat", "/proc/net/mcfilter"); strings.Contains(v4, "0xe8010101") {
		t.Errorf("source filter still there after leave:\n%s", v4)
	}
}

// udpSender sends datagrams out of one interface of ns.
type udpSender struct {
	fd int
}

func newUDPSender(t *testing.T, ns *netnstest.NS, ifname string) *udpSender {
	t.Helper()
	ifindex := ns.IfIndex(ifname)
	s := &udpSender{}
	err := ns.Do(func() (err error) {
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.SetsockoptIPMreqn(s.fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
	})
	if err != nil {
		t.Fatalf("sender on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *udpSender) send(t *testing.T, group netip.Addr, port int) {
	t.Helper()
	if err := unix.Sendto(s.fd, []byte("mcr membership test"), 0, &unix.SockaddrInet4{Addr: group.As4(), Port: port}); err != nil {
		t.Fatalf("send to %s:%d: %v", group, port, err)
	}
}

func TestMembershipHelperSocketReceivesNothing(t *testing.T) {
	a, b := netnstest.New(t, "ma"), netnstest.New(t, "mb")
	netnstest.Veth(t, a, "mcra0", []string{"10.9.0.1/24"}, b, "mcrb0", []string{"10.9.0.2/24"})
	group, port := netip.MustParseAddr("239.7.7.7"), 7777
	m := New(openIn(a))
	t.Cleanup(func() { m.Close() })
	g := Group{Ifindex: a.IfIndex("mcra0"), Addr: group}
	if err := m.Join(g); err != nil {
		t.Fatal(err)
	}
	// A socket bound to the port proves the datagrams reach UDP in a.
	var bound *net.UDPConn
	if err := a.Do(func() (err error) {
		bound, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bound.Close() })
	sender := newUDPSender(t, b, "mcrb0")
	const n = 5
	for range n {
		sender.send(t, group, port)
	}
	buf := make([]byte, 100)
	for i := range n {
		bound.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := bound.Read(buf); err != nil {
			t.Fatalf("bound socket got %d of %d datagrams: %v", i, n, err)
		}
	}
	helper := m.held[g].sock.sock.(*udpGroupSocket)
	queued, err := unix.IoctlGetInt(helper.fd, unix.SIOCINQ)
	if err != nil || queued != 0 {
		t.Errorf("helper socket has %d bytes queued (%v), want 0", queued, err)
	}
	if _, _, err := unix.Recvfrom(helper.fd, buf, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("recv on the helper socket: %v, want EAGAIN", err)
	}
}

// packetCounter counts the UDP datagrams per destination group that arrive
// on an interface, seen by an AF_PACKET socket (below any membership).
type packetCounter struct {
	fd   int
	port int
	mu   sync.Mutex
	seen map[netip.Addr]int
	done chan struct{}
}

func newPacketCounter(t *testing.T, ns *netnstest.NS, ifname string, port int) *packetCounter {
	t.Helper()
	ifindex := ns.IfIndex(ifname)
	var proto [2]byte
	binary.BigEndian.PutUint16(proto[:], unix.ETH_P_IP)
	p := &packetCounter{port: port, seen: map[netip.Addr]int{}, done: make(chan struct{})}
	err := ns.Do(func() (err error) {
		p.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(binary.NativeEndian.Uint16(proto[:])))
		if err != nil {
			return err
		}
		if err := unix.Bind(p.fd, &unix.SockaddrLinklayer{Protocol: binary.NativeEndian.Uint16(proto[:]), Ifindex: ifindex}); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", ifname, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		p.run()
	}()
	t.Cleanup(func() { close(p.done); <-stopped; unix.Close(p.fd) })
	return p
}

func (p *packetCounter) run() {
	buf := make([]byte, 2048)
	for {
		select {
		case <-p.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil || n < 28 || buf[9] != unix.IPPROTO_UDP {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 || int(binary.BigEndian.Uint16(buf[ihl+2:])) != p.port {
			continue
		}
		p.mu.Lock()
		p.seen[netip.AddrFrom4([4]byte(buf[16:20]))]++
		p.mu.Unlock()
	}
}

func (p *packetCounter) count(group netip.Addr) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[group]
}

// TestMembershipOpensIGMPSnoopingBridge is the proof that joins matter: a
// Linux bridge with IGMP snooping stands in for a switch, and the relay's
// port has multicast flooding off, so a group reaches the relay only once
// the relay's IGMP report put that port into the bridge's membership table.
// (A veth alone delivers multicast whether anyone joined or not.)
func TestMembershipOpensIGMPSnoopingBridge(t *testing.T) {
	src, br, rly := netnstest.New(t, "ms"), netnstest.New(t, "mbr"), netnstest.New(t, "mr")
	// The bridge honours its table only once a querier is established:
	// for its own querier, mcast_query_response_interval after it is
	// enabled (10 s by default; 1 s here: the value is in centiseconds).
	br.MustRun("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_query_response_interval", "100")
	br.MustRun("ip", "link", "set", "br0", "up")
	netnstest.Veth(t, src, "mcrs0", []string{"10.9.1.1/24"}, br, "mcrps", nil)
	netnstest.Veth(t, rly, "mcrr0", []string{"10.9.1.2/24"}, br, "mcrpr", nil)
	br.MustRun("ip", "link", "set", "mcrps", "master", "br0")
	br.MustRun("ip", "link", "set", "mcrpr", "master", "br0")
	br.MustRun("bridge", "link", "set", "dev", "mcrpr", "mcast_flood", "off")
	br.MustRun("ip", "link", "set", "br0", "type", "bridge", "mcast_querier", "1")

	const port = 7000
	control, group := netip.MustParseAddr("239.8.8.1"), netip.MustParseAddr("239.8.8.2")
	counter := newPacketCounter(t, rly, "mcrr0", port)
	sender := newUDPSender(t, src, "mcrs0")
	m := New(openIn(rly))
	t.Cleanup(func() { m.Close() })
	ifindex := rly.IfIndex("mcrr0")
	if err := m.Join(Group{Ifindex: ifindex, Addr: control}); err != nil {
		t.Fatal(err)
	}

	// Until the querier is established nothing reaches the relay; after,
	// the joined control group does and the other group does not.
	start := time.Now()
	waitArrival := func(what string, want netip.Addr, timeout time.Duration) {
		t.Helper()
		netnstest.Poll(t, timeout, 20*time.Millisecond, what+": a datagram to "+want.String()+" at the relay", func() bool {
			if counter.count(want) > 0 {
				return true
			}
			sender.send(t, control, port)
			sender.send(t, group, port)
			return false
		})
	}
	waitArrival("bridge querier established", control, 15*time.Second)
	established := time.Since(start)
	before := counter.count(control)
	netnstest.WaitFor(t, 10*time.Second, "the control group to keep arriving after the querier was established", func() bool {
		if counter.count(control) >= before+10 {
			return true
		}
		sender.send(t, control, port)
		sender.send(t, group, port)
		return false
	})
	if n := counter.count(group); n != 0 {
		t.Fatalf("%d datagrams to %s reached the relay before it joined: the bridge floods, the test proves nothing", n, group)
	}

	joined := time.Now()
	if err := m.Join(Group{Ifindex: ifindex, Addr: group}); err != nil {
		t.Fatal(err)
	}
	waitArrival("after the join", group, 5*time.Second)
	t.Logf("querier established after %v; %s arrived %v after the join",
		established.Round(time.Millisecond), group, time.Since(joined).Round(time.Millisecond))
}
