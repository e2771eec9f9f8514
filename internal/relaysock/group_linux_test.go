package relaysock

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// groupNS returns a namespace with a veth pair a0 (10.9.0.1) – b0
// (10.9.0.2) and b0's ifindex: what is sent out of a0 arrives on b0, on
// the CPU that sent it.
func groupNS(t *testing.T) (*netnstest.NS, int) {
	t.Helper()
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "rgrp")
	netnstest.Veth(t, ns, "a0", []string{"10.9.0.1/24"}, ns, "b0", []string{"10.9.0.2/24"})
	return ns, ns.IfIndex("b0")
}

// sendOnCPU sends n datagrams to 239.9.9.9:port out of a0 from a thread
// pinned to cpu (-1: anywhere).
func sendOnCPU(t *testing.T, ns *netnstest.NS, cpu, port, n int) {
	t.Helper()
	sendSized(t, ns, cpu, port, n, func(int) int { return 8 })
}

// sendSized is sendOnCPU with datagram i of size(i) bytes.
func sendSized(t *testing.T, ns *netnstest.NS, cpu, port, n int, size func(i int) int) {
	t.Helper()
	err := ns.Do(func() error {
		if cpu >= 0 {
			var old, set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &old); err != nil {
				return err
			}
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			// The thread goes back to the runtime as it came.
			defer func() { _ = unix.SchedSetaffinity(0, &old) }()
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 9, 0, 1)})
		if err != nil {
			return err
		}
		defer c.Close()
		ifi, err := net.InterfaceByName("a0")
		if err != nil {
			return err
		}
		if err := ipv4.NewPacketConn(c).SetMulticastInterface(ifi); err != nil {
			return err
		}
		for i := range n {
			if _, err := c.WriteToUDP(make([]byte, size(i)), &net.UDPAddr{IP: net.IPv4(239, 9, 9, 9), Port: port}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
}

// received counts, per member of g, the datagrams to port queued on it.
func received(t *testing.T, g *IngressGroup, port int) []int {
	t.Helper()
	counts := make([]int, len(g.fds))
	buf := make([]byte, 1<<16)
	for i, fd := range g.fds {
		for {
			n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err != nil {
				t.Fatalf("read member %d: %v", i, err)
			}
			// virtio_net_hdr (10), Ethernet (14), IPv4 (20), then the UDP
			// destination port.
			if off := 10 + 14 + 20 + 2; n >= off+2 && int(buf[off])<<8|int(buf[off+1]) == port {
				counts[i]++
			}
		}
	}
	return counts
}

// TestIngressGroupCPU opens a cpu-mode group for workers pinned to cores
// 1 and 0, in that slot order, and sends from each CPU: every packet a CPU
// receives goes to the member of the worker pinned there, which the
// kernel's own PACKET_FANOUT_CPU (CPU modulo members, by join order) would
// get backwards.
func TestIngressGroupCPU(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	ns, ifindex := groupNS(t)
	var g *IngressGroup
	mustDo(t, ns, func() (err error) {
		g, err = OpenIngressGroup(ifindex, 4101, FanoutCPU, []int{1, 0}, acceptAll, nil)
		return err
	})
	t.Cleanup(g.Close)
	for _, tc := range []struct {
		cpu  int
		want []int
	}{
		{cpu: 0, want: []int{0, 100}},
		{cpu: 1, want: []int{100, 0}},
	} {
		port := 7000 + tc.cpu
		sendOnCPU(t, ns, tc.cpu, port, 100)
		if diff := cmp.Diff(tc.want, received(t, g, port)); diff != "" {
			t.Errorf("datagrams sent on CPU %d, per member (-want +got):\n%s", tc.cpu, diff)
		}
	}
}

// TestIngressGroupHash opens a hash-mode group of three and sends three
// flows from everywhere, and a fourth whose every other datagram is too
// large for the MTU: each flow's datagrams all go to one member, the
// fragmented ones too (FLAG_DEFRAG reassembles them before the hash, which
// then sees their ports). Duplicates are the same sockets; the group id is
// taken while the group is open, and free again once it is closed.
func TestIngressGroupHash(t *testing.T) {
	ns, ifindex := groupNS(t)
	var g *IngressGroup
	mustDo(t, ns, func() (err error) {
		g, err = OpenIngressGroup(ifindex, 4102, FanoutHash, []int{0, 1, 2}, acceptAll, nil)
		return err
	})
	for port := 7100; port < 7104; port++ {
		size := func(int) int { return 8 }
		if port == 7103 {
			size = func(i int) int { return 8 + i%2*3000 }
		}
		sendSized(t, ns, -1, port, 300, size)
		counts := received(t, g, port)
		members := 0
		for _, n := range counts {
			if n > 0 {
				members++
			}
		}
		if members != 1 || counts[0]+counts[1]+counts[2] != 300 {
			t.Errorf("flow to port %d spread over the members as %v; want all 300 on one", port, counts)
		}
	}

	dup, err := g.Dup(2, acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	if err := errors.Join(unix.Fstat(dup, &a), unix.Fstat(g.fds[2], &b)); err != nil || a.Ino != b.Ino || dup == g.fds[2] {
		t.Errorf("Dup(2) = fd %d (inode %d), member fd %d (inode %d), %v: want another fd of the same socket",
			dup, a.Ino, g.fds[2], b.Ino, err)
	}
	unix.Close(dup)
	if _, err := g.Dup(3, acceptAll); err == nil {
		t.Error("Dup of a slot the group has no member for succeeded")
	}

	mustDo(t, ns, func() error {
		if free, err := FanoutIDFree(4102); err != nil || free {
			return fmt.Errorf("FanoutIDFree(4102) with the group open = %v, %v; want false", free, err)
		}
		if _, err := OpenIngressGroup(ifindex, 4102, FanoutHash, []int{0}, acceptAll, nil); !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("open a second group by the same id: %v, want EBUSY", err)
		}
		g.Close()
		if free, err := FanoutIDFree(4102); err != nil || !free {
			return fmt.Errorf("FanoutIDFree(4102) after Close = %v, %v; want true", free, err)
		}
		return nil
	})
}

func mustDo(t *testing.T, ns *netnstest.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}
