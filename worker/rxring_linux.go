package worker

import (
	"fmt"

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
	return newRxRing(mem, g.Blocks, g.BlockSize), nil
}

// ringOf reports whether input socket fd has a receive ring, and the
// socket's inode, which names the socket across duplicates. The
// supervisor switches a socket to TPACKET_V3 only to give it a ring
// (relaysock.OpenIngress).
func ringOf(fd int) (ring bool, ino uint64, err error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION)
	if err != nil {
		return false, 0, fmt.Errorf("read PACKET_VERSION: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, 0, fmt.Errorf("stat input socket: %w", err)
	}
	return v == unix.TPACKET_V3, st.Ino, nil
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
// call.
func ringStats(fd int) (drops, freezes uint64) {
	st, err := unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, 0
	}
	return uint64(st.Drops), uint64(st.Freeze_q_cnt)
}
