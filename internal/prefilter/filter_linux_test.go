package prefilter_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/prefilter"
	"github.com/mcrelay/mcr/worker/packet"
	"github.com/mcrelay/mcr/worker/packet/packettest"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestKernelAcceptsPrograms attaches built programs to a socket: the kernel
// checks every classic BPF program on attach (bpf_check_classic), so this
// proves the jump offsets and the length are valid for the real thing, not
// only for the interpreter. Any socket will do; no traffic is involved.
func TestKernelAcceptsPrograms(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r := rand.New(rand.NewPCG(7, 8))
	sets := map[string]func(i int) prefilter.Match{
		"5000 random ipv4": func(int) prefilter.Match {
			return prefilter.Match{Dst: randomAddr4(r), Port: uint16(1 + r.IntN(65535))}
		},
		"5000 random ipv6": func(int) prefilter.Match {
			return prefilter.Match{Dst: randomAddr6(r), Port: uint16(1 + r.IntN(65535))}
		},
		"5000 consecutive ipv4": func(i int) prefilter.Match { return prefilter.Match{Dst: addr4(i), Port: 5000} },
		"600 scattered ipv6":    func(i int) prefilter.Match { return prefilter.Match{Dst: addr6(3 * i), Port: uint16(1000 + i)} },
	}
	for name, gen := range sets {
		n := 5000
		if strings.HasPrefix(name, "600") {
			n = 600
		}
		matches := make([]prefilter.Match, n)
		for i := range matches {
			matches[i] = gen(i)
		}
		prog, err := prefilter.Build(matches)
		if err != nil {
			t.Fatal(err)
		}
		if err := prefilter.Attach(fd, prog.Instructions); err != nil {
			t.Errorf("%s (%d instructions): %v", name, len(prog.Instructions), err)
		}
	}
	if err := prefilter.Attach(fd, prefilter.DropAll()); err != nil {
		t.Errorf("DropAll: %v", err)
	}
}

func TestAttachErrors(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	badJump, err := bpf.Assemble([]bpf.Instruction{bpf.Jump{Skip: 5}, bpf.RetConstant{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		fd    int
		prog  []bpf.RawInstruction
		want  string
		errno unix.Errno
	}{
		{"empty", fd, nil, "attach filter to fd %d: 0 instructions, want 1..4096: invalid argument", unix.EINVAL},
		{"too long", fd, make([]bpf.RawInstruction, prefilter.MaxInstructions+1), "attach filter to fd %d: 4097 instructions, want 1..4096: invalid argument", unix.EINVAL},
		{"jump past the end", fd, badJump, "attach filter to fd %d: invalid argument", unix.EINVAL},
		{"not a socket", -1, prefilter.DropAll(), "attach filter to fd %d: bad file descriptor", unix.EBADF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := prefilter.Attach(tc.fd, tc.prog)
			want := fmt.Sprintf(tc.want, tc.fd)
			if err == nil || err.Error() != want || !errors.Is(err, tc.errno) {
				t.Errorf("error %v, want %q wrapping %v", err, want, tc.errno)
			}
		})
	}
}

// TestFilterOnPacketSocket runs the filter where it lives: on an AF_PACKET
// SOCK_DGRAM socket in a namespace, fed by packets injected into the other
// end of a veth pair. It checks the program sees the IP header at offset 0,
// that DropAll drops and that re-attaching swaps the program in place.
func TestFilterOnPacketSocket(t *testing.T) {
	src := netnstest.New(t, "fls")
	relay := netnstest.New(t, "flr")
	netnstest.Veth(t, src, "fs0", nil, relay, "fr0", nil)
	mac, err := net.ParseMAC(strings.TrimSpace(relay.MustRun("cat", "/sys/class/net/fr0/address")))
	if err != nil {
		t.Fatal(err)
	}
	ifindex := relay.IfIndex("fr0")
	injectIdx := src.IfIndex("fs0")

	var inject, rx4, rx6 int
	if err := src.Do(func() (err error) {
		inject, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(inject)
	// The race-free order: an unbound protocol-0 socket receives nothing;
	// attach, then bind to the protocol and interface.
	open := func(proto uint16) int {
		var fd int
		if err := relay.Do(func() (err error) {
			fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := prefilter.Attach(fd, prefilter.DropAll()); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}); err != nil {
			t.Fatal(err)
		}
		tv := unix.NsecToTimeval((3 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	rx4, rx6 = open(unix.ETH_P_IP), open(unix.ETH_P_IPV6)
	defer unix.Close(rx4)
	defer unix.Close(rx6)

	send := func(pkts ...[]byte) {
		t.Helper()
		for _, p := range pkts {
			proto := uint16(unix.ETH_P_IP)
			if p[0]>>4 == 6 {
				proto = unix.ETH_P_IPV6
			}
			to := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: injectIdx, Halen: 6}
			copy(to.Addr[:], mac)
			if err := unix.Sendto(inject, p, 0, to); err != nil {
				t.Fatalf("inject: %v", err)
			}
		}
	}
	tagged := func(dst, tag string) []byte {
		d := netip.MustParseAddrPort(dst)
		if d.Addr().Is4() {
			return packettest.BuildUDP4(src4, d, []byte(tag))
		}
		return packettest.BuildUDP6(src6, d, []byte(tag))
	}
	// receive reads n packets and describes each: its payload, or the
	// reason the parser gives.
	receive := func(fd, n int) []string {
		t.Helper()
		var got []string
		buf := make([]byte, 65536)
		for range n {
			m, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				t.Fatalf("receive after %q: %v", got, err)
			}
			var d packet.Datagram
			if r := packet.Parse(buf[:m], &d); r != packet.OK {
				got = append(got, r.String())
			} else {
				got = append(got, string(buf[d.PayloadOff:d.PayloadOff+d.PayloadLen]))
			}
		}
		return got
	}

	// While DropAll is attached nothing arrives, wanted or not.
	send(tagged("239.1.1.1:5000", "dropped by DropAll"), tagged("[ff3e::1]:5000", "dropped by DropAll"))

	prog, err := prefilter.Build([]prefilter.Match{match("239.1.1.1:5000"), match("[ff3e::1]:5000")})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{rx4, rx6} {
		if err := prefilter.Attach(fd, prog.Instructions); err != nil {
			t.Fatal(err)
		}
	}
	send(
		tagged("239.1.1.1:5001", "other port"),
		tagged("239.1.1.2:5000", "other group"),
		tagged("239.1.1.1:5000", "wanted v4"),
		packettest.Fragment(tagged("239.1.1.1:5000", "fragmented, not reassembled: no DEFRAG here"), 16)[1],
		packettest.Fragment(tagged("239.1.1.9:5000", "fragment of other group"), 16)[0],
		tagged("239.1.1.1:5000", "v4 sentinel"),
		tagged("[ff3e::1]:5001", "other port"),
		tagged("[ff3e::2]:5000", "other group"),
		tagged("[ff3e::1]:5000", "wanted v6"),
		packettest.WithHopByHop6(tagged("[ff3e::1]:5000", "hop-by-hop v6")),
		tagged("[ff3e::1]:5000", "v6 sentinel"),
	)
	if diff := cmp.Diff([]string{"wanted v4", "fragment", "v4 sentinel"}, receive(rx4, 3)); diff != "" {
		t.Errorf("IPv4 socket received (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"wanted v6", "hop-by-hop v6", "v6 sentinel"}, receive(rx6, 3)); diff != "" {
		t.Errorf("IPv6 socket received (-want +got):\n%s", diff)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestAttachTooLargeLeavesSocketUnfiltered shrinks the socket option memory
// (net.core.optmem_max, per namespace) below a large program: Attach must
// not leave the old, smaller program in place (it would drop traffic the
// new rules want) but replace it by the VLAN guard alone and report
// ErrUnfiltered.
func TestAttachTooLargeLeavesSocketUnfiltered(t *testing.T) {
	fd := socketWithOptmem(t, "flt", 4096)
	if err := prefilter.Attach(fd, prefilter.DropAll()); err != nil {
		t.Fatalf("small program: %v", err)
	}
	matches := make([]prefilter.Match, 2000)
	for i := range matches {
		matches[i] = prefilter.Match{Dst: addr4(2 * i), Port: uint16(1000 + i)}
	}
	prog, err := prefilter.Build(matches)
	if err != nil {
		t.Fatal(err)
	}
	err = prefilter.Attach(fd, prog.Instructions)
	if !errors.Is(err, prefilter.ErrUnfiltered) || !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("attach %d instructions with optmem_max 4096: %v, want ErrUnfiltered wrapping ENOMEM", len(prog.Instructions), err)
	}
	if errors.Is(err, prefilter.ErrUnguarded) {
		t.Fatalf("ErrUnfiltered also wraps ErrUnguarded: %v", err)
	}
	if n, err := filterLen(fd); err != nil || n != guardOnlyLen {
		t.Fatalf("filter after ErrUnfiltered: %d instructions (%v), want the %d of the VLAN guard and an accept", n, err, guardOnlyLen)
	}
}

// filterLen returns the length of fd's filter, 0 without one: SO_GET_FILTER
// with an option length of 0 asks for the number of instructions
// (sk_get_filter), which comes back as the option length.
func filterLen(fd int) (int, error) {
	var n uint32
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_GET_FILTER, 0,
		uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// socketWithOptmem returns a socket, closed at cleanup, in a new namespace
// whose socket option memory (net.core.optmem_max), which holds a socket's
// filters, is optmem bytes.
func socketWithOptmem(t *testing.T, prefix string, optmem int) int {
	ns := netnstest.New(t, prefix)
	ns.MustRun("sysctl", "-qw", fmt.Sprintf("net.core.optmem_max=%d", optmem))
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// guardOnlyLen is the length of the VLAN guard followed by an accept.
var guardOnlyLen = len(prefilter.DropVLANTagged([]bpf.RawInstruction{{Op: 0x06, K: 1}}))

// TestAttachWithoutMemoryReportsUnguarded leaves the socket option memory
// too small for any program: Attach must say the socket has no filter at
// all (ErrUnguarded, not ErrUnfiltered), so that the worker stops relaying
// from it rather than relay VLAN-tagged frames it cannot see.
func TestAttachWithoutMemoryReportsUnguarded(t *testing.T) {
	fd := socketWithOptmem(t, "flg", 64)
	prog, err := prefilter.Build([]prefilter.Match{match("239.1.1.1:5000")})
	if err != nil {
		t.Fatal(err)
	}
	err = prefilter.Attach(fd, prog.Instructions)
	if !errors.Is(err, prefilter.ErrUnguarded) || errors.Is(err, prefilter.ErrUnfiltered) || !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("attach with optmem_max 64: %v, want ErrUnguarded (and not ErrUnfiltered) wrapping ENOMEM", err)
	}
	if n, err := filterLen(fd); err != nil || n != 0 {
		t.Fatalf("socket has a %d-instruction filter (%v) after ErrUnguarded", n, err)
	}
}

// TestVLANGuardOnPacketSocket injects tagged Ethernet frames into a veth
// pair and checks which a packet socket at the other end receives: with
// DropVLANTagged no frame of a VLAN, whether the peer's VLAN offload is on
// or off (the kernel moves the tag out of the frame either way); without
// it, the tagged frames too (a ring reader counts them itself).
func TestVLANGuardOnPacketSocket(t *testing.T) {
	src := netnstest.New(t, "fvs")
	relay := netnstest.New(t, "fvr")
	netnstest.Veth(t, src, "fv0", nil, relay, "fv1", nil)
	ifindex := relay.IfIndex("fv1")
	var rx int
	if err := relay.Do(func() (err error) {
		rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	if err := prefilter.Attach(rx, prefilter.DropAll()); err != nil {
		t.Fatal(err)
	}
	// ETH_P_ALL, as the worker's: a socket bound to ETH_P_IP gets a
	// frame only after the kernel has handled and cleared its tag.
	if err := unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((3 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	prog, err := prefilter.Build([]prefilter.Match{match("239.1.1.1:5000")})
	if err != nil {
		t.Fatal(err)
	}
	// frame is an Ethernet frame of the wanted group carrying payload
	// behind tags (tag protocol identifier and control information pairs).
	frame := func(payload string, tags ...uint16) []byte {
		return packettest.EthernetFrame(packettest.BuildUDP4(src4, netip.MustParseAddrPort("239.1.1.1:5000"), []byte(payload)), 0, tags...)
	}
	send := func() {
		t.Helper()
		if err := src.Do(func() error {
			return packettest.InjectFrames("fv0",
				frame("untagged"),
				frame("VLAN 100", 0x8100, 100),
				frame("priority tag", 0x8100, 0xa000), // PCP 5, VLAN ID 0
				frame("802.1ad VLAN 100", 0x88a8, 100),
				frame("VLAN 4095 with PCP", 0x8100, 0xefff),
				frame("sentinel"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	receive := func() []string {
		t.Helper()
		var got []string
		buf := make([]byte, 65536)
		for len(got) == 0 || got[len(got)-1] != "sentinel" {
			n, _, err := unix.Recvfrom(rx, buf, 0)
			if err != nil {
				t.Fatalf("receive after %q: %v", got, err)
			}
			var d packet.Datagram
			if packet.Parse(buf[:n], &d) != packet.OK {
				t.Fatalf("received a packet that does not parse")
			}
			got = append(got, string(buf[d.PayloadOff:d.PayloadOff+d.PayloadLen]))
		}
		return got
	}
	for _, offload := range []string{"on", "off"} {
		if _, err := relay.Run("ethtool", "-K", "fv1", "rxvlan", offload, "rx-vlan-stag-hw-parse", offload); err != nil {
			t.Logf("ethtool -K fv1 rxvlan %s: %v (the kernel untags in software anyway)", offload, err)
		}
		if err := prefilter.Attach(rx, prefilter.DropVLANTagged(prog.Instructions)); err != nil {
			t.Fatal(err)
		}
		send()
		if diff := cmp.Diff([]string{"untagged", "priority tag", "sentinel"}, receive()); diff != "" {
			t.Errorf("rx VLAN offload %s, guarded: received (-want +got):\n%s", offload, diff)
		}
		if err := prefilter.Attach(rx, prog.Instructions); err != nil {
			t.Fatal(err)
		}
		send()
		want := []string{"untagged", "VLAN 100", "priority tag", "802.1ad VLAN 100", "VLAN 4095 with PCP", "sentinel"}
		if diff := cmp.Diff(want, receive()); diff != "" {
			t.Errorf("rx VLAN offload %s, unguarded: received (-want +got):\n%s", offload, diff)
		}
	}
}
