package relaysock

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// openFDs counts the process's open file descriptors.
func openFDs() (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	return len(entries), err
}

// failedOpens is how often each failing open is tried: workers retry a
// failed socket every few seconds for as long as the rule stays, so a
// leak per attempt grows without bound. (Closing an AF_PACKET socket
// waits for an RCU grace period, so a few suffice.)
const failedOpens = 20

// failsWithoutLeak calls open failedOpens times and returns an error unless
// every call fails (with want, unless nil), returns -1 and leaves no fd behind. It calls
// no testing.T method, so it may run on a goroutine in a namespace.
func failsWithoutLeak(want error, open func() (int, error)) error {
	before, err := openFDs()
	if err != nil {
		return err
	}
	for range failedOpens {
		fd, err := open()
		if err == nil || (want != nil && !errors.Is(err, want)) || fd != -1 {
			if fd >= 0 {
				unix.Close(fd)
			}
			return fmt.Errorf("open: fd %d, %v; want -1 and %v", fd, err, want)
		}
	}
	// Fewer is fine: an fd of an earlier netnstest.Do may close late.
	after, err := openFDs()
	if err == nil && after > before {
		err = fmt.Errorf("%d failed opens: %d fds open before, %d after", failedOpens, before, after)
	}
	return err
}

// TestFailedEgressOpenLeaksNoFD opens an output on an interface that does
// not exist, without a namespace: the socket is created, and setting it up
// for the interface fails (how depends on the privileges and the kernel).
func TestFailedEgressOpenLeaksNoFD(t *testing.T) {
	k := EgressKey{IfIndex: 1 << 30}
	if err := failsWithoutLeak(nil, func() (int, error) { return OpenEgress(k) }); err != nil {
		t.Error(err)
	}
}

// TestFailedOpensLeakNoFD fails output and input opens at their later
// steps, in a namespace: an output source the interface does not have
// (bind), an output source port another socket holds (bind), a raw socket
// on an interface that does not exist, an input on an ifindex that does
// not exist (bind) and an input whose fanout group another socket holds
// with another mode (the last step).
func TestFailedOpensLeakNoFD(t *testing.T) {
	ns := netnstest.New(t, "rsleak")
	lo := ns.IfIndex("lo")
	other, err := openOtherFanout(ns, lo, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	ring := &Ring{Blocks: 2, BlockSize: MinRingBlockSize, TimeoutMS: 1}
	var squatter int
	if err := ns.Do(func() (err error) {
		if squatter, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.Bind(squatter, &unix.SockaddrInet4{Port: 5001})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(squatter)
	for _, tc := range []struct {
		name string
		want error
		open func() (int, error)
	}{
		{"egress source not on the interface", syscall.EADDRNOTAVAIL, func() (int, error) {
			return OpenEgress(EgressKey{IfIndex: lo, Src: netip.MustParseAddr("10.99.0.1")})
		}},
		{"egress source port in use", syscall.EADDRINUSE, func() (int, error) {
			return OpenEgress(EgressKey{IfIndex: lo, Port: 5001})
		}},
		{"raw egress on a missing ifindex", nil, func() (int, error) {
			return OpenEgress(EgressKey{IfIndex: 1 << 30, V6: true, Raw: true})
		}},
		{"ingress on a missing ifindex", syscall.ENODEV, func() (int, error) {
			return OpenIngress(1<<30, 7, FanoutHash, acceptAll, nil)
		}},
		{"ingress in a fanout group of another mode", syscall.EINVAL, func() (int, error) {
			return OpenIngress(lo, 7, FanoutCPU, acceptAll, ring)
		}},
	} {
		if err := ns.Do(func() error { return failsWithoutLeak(tc.want, tc.open) }); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// openOtherFanout opens an AF_PACKET socket on ifindex in ns that holds
// fanout group id in hash mode without flags, which no OpenIngress can join.
func openOtherFanout(ns *netnstest.NS, ifindex, id int) (int, error) {
	fd := -1
	err := ns.Do(func() error {
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		err = unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
		if err == nil {
			err = unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT, id|unix.PACKET_FANOUT_HASH<<16)
		}
		if err != nil {
			unix.Close(s)
			return fmt.Errorf("hold fanout group %d: %w", id, err)
		}
		fd = s
		return nil
	})
	return fd, err
}
