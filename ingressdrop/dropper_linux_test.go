package ingressdrop

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// holdEnv makes the test binary, re-executed by TestLinkDiesWithProcess,
// attach a Dropper to the ifindex it names, print "holding" and wait to be
// killed.
const holdEnv = "MCR_INGRESSDROP_HOLD"

func TestMain(m *testing.M) {
	if s := os.Getenv(holdEnv); s != "" {
		os.Exit(hold(s))
	}
	os.Exit(m.Run())
}

func hold(ifindex string) int {
	d := New()
	ix, err := strconv.Atoi(ifindex)
	if err == nil {
		err = d.Set(ix, dropped)
	}
	if err != nil {
		fmt.Println("hold:", err)
		return 1
	}
	fmt.Println("holding")
	// Wait for SIGKILL. (A bare select{} would end the process as a
	// deadlock; the signal handler's goroutine keeps the runtime waiting.)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	// cilium/ebpf closes fds of unreachable objects in finalizers: keep
	// the Dropper reachable until the end.
	runtime.KeepAlive(d)
	return 1
}

// The streams of the topology: dropped ones, and neighbours of theirs that
// must still reach local listeners.
var (
	group4     = netip.MustParseAddr("239.1.2.3")
	otherGrp4  = netip.MustParseAddr("239.1.2.4")
	group6     = netip.MustParseAddr("ff1e::1:3")
	otherGrp6  = netip.MustParseAddr("ff1e::1:4")
	dropped    = []Match{{Group: group4, Port: 5000}, {Group: group6, Port: 5000}}
	droppedSet = []string{"239.1.2.3:5000", "[ff1e::1:3]:5000"}
)

// topology is a sender namespace and a relay namespace joined by a veth,
// snd0 — in0. In the relay namespace, UDP listeners stand for local
// applications and an AF_PACKET ETH_P_ALL socket on in0 for mcr's input.
type topology struct {
	snd, relay *netnstest.NS
	ifindex    int // of in0
	send4      int // UDP sockets in snd sending out of snd0
	send6      int
	inject     int // AF_PACKET socket in snd, for 802.1Q-tagged frames out of snd0
	sndIndex   int // of snd0
	// listeners in the relay namespace by name (see listenerName), each
	// bound to a port and joined to groups on in0.
	listeners map[string]int
	tap       int
}

func newTopology(t *testing.T) *topology {
	snd := netnstest.New(t, "idsnd")
	relay := netnstest.New(t, "idrel")
	netnstest.Veth(t, snd, "snd0", []string{"10.9.0.1/24", "fd00:9::1/64"},
		relay, "in0", []string{"10.9.0.2/24", "fd00:9::2/64"})
	tp := &topology{snd: snd, relay: relay, ifindex: relay.IfIndex("in0"), sndIndex: snd.IfIndex("snd0"),
		listeners: map[string]int{}}
	tp.send4 = openSender(t, snd, unix.AF_INET, tp.sndIndex)
	tp.send6 = openSender(t, snd, unix.AF_INET6, tp.sndIndex)
	if err := snd.Do(func() (err error) {
		tp.inject, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("open AF_PACKET socket in %s: %v", snd.Name, err)
	}
	t.Cleanup(func() { unix.Close(tp.inject) })
	tp.listen(t, 5000, group4, otherGrp4)
	tp.listen(t, 5001, group4)
	tp.listen(t, 5000, group6, otherGrp6)
	tp.listen(t, 5001, group6)
	if err := relay.Do(func() (err error) {
		tp.tap, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(tp.tap, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: tp.ifindex})
	}); err != nil {
		t.Fatalf("open AF_PACKET tap on in0: %v", err)
	}
	t.Cleanup(func() { unix.Close(tp.tap) })
	setTimeout(t, tp.tap)
	return tp
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openSender opens a UDP socket in ns that sends multicast out of the
// interface with ifindex.
func openSender(t *testing.T, ns *netnstest.NS, family, ifindex int) int {
	t.Helper()
	var fd int
	if err := ns.Do(func() (err error) {
		if fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if family == unix.AF_INET {
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex)
	}); err != nil {
		t.Fatalf("open sender in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// listen opens a UDP socket in the relay namespace bound to port and joined
// to groups on in0, and only to them: IP_MULTICAST_ALL is off, so it gets
// no group another socket joined.
func (tp *topology) listen(t *testing.T, port int, groups ...netip.Addr) {
	t.Helper()
	v6 := groups[0].Is6()
	name := listenerName(port, v6)
	var fd int
	if err := tp.relay.Do(func() (err error) {
		if !v6 {
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
				return err
			}
			for _, g := range groups {
				mreq := &unix.IPMreqn{Multiaddr: g.As4(), Ifindex: int32(tp.ifindex)}
				if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
					return err
				}
			}
			return nil
		}
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		for opt, v := range map[int]int{unix.IPV6_V6ONLY: 1, unix.IPV6_MULTICAST_ALL: 0} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, opt, v); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
			return err
		}
		for _, g := range groups {
			mreq := &unix.IPv6Mreq{Multiaddr: g.As16(), Interface: uint32(tp.ifindex)}
			if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("listener %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	setTimeout(t, fd)
	tp.listeners[name] = fd
}

func listenerName(port int, v6 bool) string {
	if v6 {
		return fmt.Sprintf("udp6 :%d", port)
	}
	return fmt.Sprintf("udp4 :%d", port)
}
func setTimeout(t *testing.T, fd int) {
	t.Helper()
	tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
}

// datagram is one datagram of a round: sent to dst, untagged through a UDP
// socket or 802.1Q-tagged through an AF_PACKET socket, and the listener
// that receives it unless its stream is dropped.
type datagram struct {
	dst      string
	vlan     int    // -1: untagged; else the VLAN id of the tag
	listener string // "": none (a frame of VLAN 100, which in0 has no device for)
}

// roundTraffic is what every round sends. Each listener's last datagram
// is one it always receives (a neighbouring group or port): its marker.
var roundTraffic = []datagram{
	{"239.1.2.3:5000", -1, "udp4 :5000"},
	{"239.1.2.3:5000", -1, "udp4 :5000"},
	{"239.1.2.3:5000", -1, "udp4 :5000"},
	{"[ff1e::1:3]:5000", -1, "udp6 :5000"},
	{"[ff1e::1:3]:5000", -1, "udp6 :5000"},
	{"[ff1e::1:3]:5000", -1, "udp6 :5000"},
	{"239.1.2.3:5001", -1, "udp4 :5001"},
	{"[ff1e::1:3]:5001", -1, "udp6 :5001"},
	// A priority-tagged frame goes up in0's stack like an untagged one;
	// a VLAN 100 frame is not in0's (the kernel drops it as
	// PACKET_OTHERHOST for want of a VLAN device) and must not be
	// counted as dropped by the program.
	{"239.1.2.3:5000", 0, "udp4 :5000"},
	{"239.1.2.3:5000", 100, ""},
	{"239.1.2.4:5000", -1, "udp4 :5000"},
	{"[ff1e::1:4]:5000", -1, "udp6 :5000"},
}

var round int

// payloadOf is the payload of datagram i of the current round.
func payloadOf(i int) string {
	d := roundTraffic[i]
	return fmt.Sprintf("round %d: %s vlan %d #%d", round, d.dst, d.vlan, i)
}

// exchange sends roundTraffic and returns, per listener, the payloads it
// received, and the payloads the AF_PACKET tap on in0 received.
//
// The sends run on one CPU: a veth queues what it receives to the backlog
// of the CPU that sent it (netif_rx), which processes it in order, so by
// the time a listener has its marker the kernel is done with every
// datagram sent before it, delivered or dropped. That makes "received
// nothing else" a fact rather than a guess about timing.
func (tp *topology) exchange(t *testing.T) (map[string][]string, []string) {
	t.Helper()
	round++
	if err := sendOnOneCPU(func() error {
		for i, d := range roundTraffic {
			if err := tp.send(d, payloadOf(i)); err != nil {
				return fmt.Errorf("send to %s, VLAN %d: %w", d.dst, d.vlan, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	got := map[string][]string{}
	for name, fd := range tp.listeners {
		marker := ""
		for i, d := range roundTraffic {
			if d.listener == name {
				marker = payloadOf(i)
			}
		}
		got[name] = readUntil(t, name, fd, marker)
	}
	prefix := fmt.Sprintf("round %d: ", round)
	var tapped []string
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 2048)
	for len(tapped) < len(roundTraffic) && time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(tp.tap, buf, 0)
		if err != nil {
			continue
		}
		if p, ok := udpPayload(buf[:n]); ok && strings.HasPrefix(p, prefix) {
			tapped = append(tapped, p)
		}
	}
	slices.Sort(tapped)
	return got, tapped
}

// send sends d with payload out of snd0.
func (tp *topology) send(d datagram, payload string) error {
	dst := netip.MustParseAddrPort(d.dst)
	switch {
	case d.vlan >= 0:
		// An IPv4 multicast frame (RFC 1112 §6.4 MAC) with an 802.1Q tag.
		g := dst.Addr().As4()
		frame := []byte{0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3], 0x02, 0, 0, 0, 0, 1,
			0x81, 0x00, byte(d.vlan >> 8), byte(d.vlan), 0x08, 0x00}
		frame = append(frame, packettest.BuildUDP4(netip.MustParseAddrPort("10.9.0.1:40000"), dst, []byte(payload))...)
		return unix.Sendto(tp.inject, frame, 0, &unix.SockaddrLinklayer{Ifindex: tp.sndIndex})
	case dst.Addr().Is4():
		return unix.Sendto(tp.send4, []byte(payload), 0, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	}
	return unix.Sendto(tp.send6, []byte(payload), 0, &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())})
}

// readUntil reads datagrams from fd until one is marker, or 5 s pass.
func readUntil(t *testing.T, name string, fd int, marker string) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 2048)
	// The socket's receive timeout paces the polling.
	netnstest.PollErr(t, 5*time.Second, 0, func() error {
		if n, _, err := unix.Recvfrom(fd, buf, 0); err == nil {
			got = append(got, string(buf[:n]))
			if string(buf[:n]) == marker {
				return nil
			}
		}
		return fmt.Errorf("%s: no %q yet; got %q", name, marker, got)
	})
	return got
}

// udpPayload returns the payload of an IPv4 or IPv6 UDP packet.
func udpPayload(p []byte) (string, bool) {
	switch {
	case len(p) >= 28 && p[0]>>4 == 4 && p[9] == unix.IPPROTO_UDP:
		return string(p[int(p[0]&0x0f)*4+8:]), true
	case len(p) >= 48 && p[0]>>4 == 6 && p[6] == unix.IPPROTO_UDP:
		return string(p[48:]), true
	}
	return "", false
}

// sendOnOneCPU runs send on a thread pinned to one CPU. The thread is never
// unlocked, so it exits with the goroutine and its affinity goes with it.
func sendOnOneCPU(send func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var all, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &all); err != nil {
			errc <- err
			return
		}
		for cpu := 0; cpu < 1024; cpu++ {
			if all.IsSet(cpu) {
				one.Set(cpu)
				break
			}
		}
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			errc <- err
			return
		}
		errc <- send()
	}()
	return <-errc
}

// wantDelivery is what each listener receives in a round when the streams
// in droppedDst are dropped, what the tap receives (everything), and how
// many datagrams the program drops.
func wantDelivery(droppedDst ...string) (map[string][]string, []string, uint64) {
	want := map[string][]string{}
	var tapped []string
	var drops uint64
	for i, d := range roundTraffic {
		tapped = append(tapped, payloadOf(i))
		if d.vlan <= 0 && slices.Contains(droppedDst, d.dst) {
			drops++
			continue
		}
		if d.listener != "" {
			want[d.listener] = append(want[d.listener], payloadOf(i))
		}
	}
	slices.Sort(tapped)
	return want, tapped, drops
}

// checkRound runs a round and compares it with wantDelivery(droppedDst),
// the program's drop counter with it when d has a program on in0.
func (tp *topology) checkRound(t *testing.T, what string, d *Dropper, droppedDst ...string) {
	t.Helper()
	var before uint64
	if d != nil {
		before, _ = d.Dropped(tp.ifindex)
	}
	got, tapped := tp.exchange(t)
	want, wantTapped, wantDrops := wantDelivery(droppedDst...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: local listeners received (-want +got):\n%s", what, diff)
	}
	if diff := cmp.Diff(wantTapped, tapped); diff != "" {
		t.Errorf("%s: AF_PACKET tap on in0 received (-want +got):\n%s", what, diff)
	}
	if d == nil {
		return
	}
	if after, ok := d.Dropped(tp.ifindex); !ok || after-before != wantDrops {
		t.Errorf("%s: Dropped went from %d to %d (attached: %v), want +%d", what, before, after, ok, wantDrops)
	}
}

func (tp *topology) set(t *testing.T, d *Dropper, matches []Match) {
	t.Helper()
	if err := tp.relay.Do(func() error { return d.Set(tp.ifindex, matches) }); err != nil {
		t.Fatalf("Set(%d, %v): %v", tp.ifindex, matches, err)
	}
}

// TestDropperExclusive is the feature: local listeners stop receiving the
// dropped streams, and only them, while an AF_PACKET ETH_P_ALL socket on
// the interface still receives every datagram; removing a match, an empty
// set, and Close each restore delivery.
func TestDropperExclusive(t *testing.T) {
	tp := newTopology(t)
	d := New()
	t.Cleanup(func() { d.Close() })

	tp.checkRound(t, "before any Set", nil)
	tp.set(t, d, dropped)
	tp.checkRound(t, "both streams dropped", d, droppedSet...)

	// More matches than the first map holds: the program is replaced on
	// its link, and the counter carries over.
	many := slices.Clone(dropped)
	for i := range 200 {
		many = append(many, Match{Group: netip.AddrFrom4([4]byte{239, 9, byte(i / 256), byte(i)}), Port: 5000})
	}
	tp.set(t, d, many)
	tp.checkRound(t, "after growing to 202 matches", d, droppedSet...)

	// As many matches as the map holds, most of them new: added before the
	// old ones go, they would not fit, so the map is replaced instead.
	others := slices.Clone(dropped)
	for i := range 254 {
		others = append(others, Match{Group: netip.AddrFrom4([4]byte{239, 10, byte(i / 256), byte(i)}), Port: 5000})
	}
	tp.set(t, d, others)
	tp.checkRound(t, "after replacing a full map's matches", d, droppedSet...)

	tp.set(t, d, dropped[1:])
	tp.checkRound(t, "IPv4 stream removed", d, droppedSet[1])
	tp.set(t, d, nil)
	tp.checkRound(t, "empty set", nil)
	if _, ok := d.Dropped(tp.ifindex); ok {
		t.Error("Dropped reports a program after an empty set")
	}
	tp.set(t, d, dropped)
	tp.checkRound(t, "set again", d, droppedSet...)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	tp.checkRound(t, "after Close", nil)
	if err := d.Set(tp.ifindex, dropped); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v, want ErrClosed", err)
	}
}

// TestLinkDiesWithProcess proves the safety property: a process that holds
// the program and dies by SIGKILL, closing nothing itself, leaves no drop
// behind. The kernel closes its fds at exit, and a tcx link is released
// with its last reference.
func TestLinkDiesWithProcess(t *testing.T) {
	tp := newTopology(t)
	p := netnstest.Start(t, tp.relay, "env", holdEnv+"="+strconv.Itoa(tp.ifindex), os.Args[0], "-test.run=^$")
	netnstest.WaitFor(t, 10*time.Second, "the child to attach", func() bool {
		return strings.Contains(p.Output(), "holding") || strings.Contains(p.Output(), "hold:")
	})
	if !strings.Contains(p.Output(), "holding") {
		t.Fatalf("child: %s", p.Output())
	}
	tp.checkRound(t, "child holds the program", nil, droppedSet...)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(5 * time.Second); err == nil {
		t.Fatal("child exited cleanly; want killed")
	}
	tp.checkRound(t, "child killed", nil)
}

func TestSetErrors(t *testing.T) {
	netnstest.RequireRoot(t)
	d := New()
	defer d.Close()
	ns := netnstest.New(t, "iderr")
	err := ns.Do(func() error { return d.Set(4242, dropped) })
	if !errors.Is(err, unix.ENODEV) {
		t.Errorf("Set on a missing ifindex: %v, want ENODEV", err)
	}
	err = d.Set(1, []Match{{Group: group4}})
	if want := "set exclusive input on ifindex 1: match 239.1.2.3:0: port 0"; err == nil || err.Error() != want {
		t.Errorf("Set with port 0: %v, want %q", err, want)
	}
	err = d.Set(1, []Match{{Group: group4, Port: 1, Source: netip.MustParseAddr("fd00::1")}})
	if want := "set exclusive input on ifindex 1: match 239.1.2.3:1 from fd00::1: source and group of different families"; err == nil || err.Error() != want {
		t.Errorf("Set with mixed families: %v, want %q", err, want)
	}
}
