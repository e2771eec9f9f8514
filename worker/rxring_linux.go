package worker

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// mapRing maps the receive ring of geometry g that the supervisor set up
// on input socket fd. The mapping outlives the socket: pages the kernel
// inserted stay valid until munmap, so sends still pointing into a block
// after the socket closed read what they read before.
func mapRing(fd int, g *relaysock.Ring) (*rxRing, error) {
	mem, err := unix.Mmap(fd, 0, g.Blocks*g.BlockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map receive ring (%d blocks of %d bytes): %w", g.Blocks, g.BlockSize, err)
	}
	if g.FrameSize > 0 {
		return newFrameRing(mem, g.Frames(), g.FrameSize), nil
	}
	return newRxRing(mem, g.Blocks, g.BlockSize), nil
}

// ringOf reports whether input socket fd has a receive ring, whether it
// is a frame ring, and the socket's inode, which names the socket across
// duplicates. The supervisor switches a socket to TPACKET_V2 or V3 only to
// give it a ring (relaysock.OpenIngress).
func ringOf(fd int) (ring, frames bool, ino uint64, err error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION)
	if err != nil {
		return false, false, 0, fmt.Errorf("read PACKET_VERSION: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, false, 0, fmt.Errorf("stat input socket: %w", err)
	}
	return v == unix.TPACKET_V3 || v == unix.TPACKET_V2, v == unix.TPACKET_V2, st.Ino, nil
}

func unmapRing(r *rxRing) {
	_ = unix.Munmap(r.mem)
	r.mem = nil
}

// clearSocketError reads and so clears the pending error of ring socket
// fd (ENETDOWN while its link is down): a ring socket is never read, so
// nothing else clears it, and poll(2) would report POLLERR for as long
// as it is set.
func clearSocketError(fd int) {
	_, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
}

// ringStats returns the packets the kernel dropped on ring socket fd, and
// the times the ring froze (every block was the worker's), since the last
// call. A frame ring does not freeze: each packet that finds the next
// frame still the worker's is dropped, so drops are its freezes.
func ringStats(fd int, frames bool) (drops, freezes uint64) {
	if frames {
		st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err != nil {
			return 0, 0
		}
		return uint64(st.Drops), uint64(st.Drops)
	}
	st, err := unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, 0
	}
	return uint64(st.Drops), uint64(st.Freeze_q_cnt)
}

// recvTrunc reads one packet from fd into buf without waiting and returns
// its whole length (MSG_TRUNC), which exceeds len(buf) when it did not fit.
func recvTrunc(fd int, buf []byte) (int, error) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(p), uintptr(len(buf)),
		unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
