package relaysock

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/prefilter"
)

// RcvBufSize is the receive buffer of each AF_PACKET socket: room for about
// 3,000 full-size frames (skb truesize) while the loop is busy elsewhere.
const RcvBufSize = 8 << 20

// fanoutFlags are the PACKET_FANOUT flags of every group, which all members
// must agree on (with the type, the protocol and the device): DEFRAG
// reassembles IPv4 fragments before fanout, so a datagram's fragments reach
// one member whole and FanoutHash sees its ports; IGNORE_OUTGOING keeps the
// relay's own egress out of every member.
const fanoutFlags = unix.PACKET_FANOUT_FLAG_DEFRAG | unix.PACKET_FANOUT_FLAG_IGNORE_OUTGOING

// fanoutType returns the PACKET_FANOUT type of mode.
func fanoutType(mode Fanout) (int, error) {
	switch mode {
	case FanoutHash:
		return unix.PACKET_FANOUT_HASH, nil
	case FanoutCPU:
		return unix.PACKET_FANOUT_CBPF, nil
	}
	return 0, fmt.Errorf("fanout mode %v: want hash or cpu", mode)
}

// OpenIngress opens the ingress socket of one interface: SOCK_RAW with
// PACKET_VNET_HDR, so that every packet starts with a struct
// virtio_net_hdr, which alone tells a UDP GSO aggregate (several
// datagrams the kernel has not segmented yet, as veth, tun and loopback
// deliver them) from one datagram; the option needs SOCK_RAW (EINVAL on
// SOCK_DGRAM), so the link-layer header follows, then the IP header. The
// prefilter prog (prefilter.Build, its loads relative to the network header
// by prefilter.AtNetworkHeader, as the link header's length depends on the
// device) is attached before bind so that not one unfiltered packet is
// queued, behind the VLAN guard unless the socket has a ring
// (prefilter.ForInput). This is the one attach of an opened socket: when the
// kernel does not take the program (prefilter.Attach), the socket is
// returned all the same with an error wrapping prefilter.ErrUnfiltered, and
// the caller owns it; any other error leaves no socket. The
// socket takes all protocols (IPv4 and IPv6 on one socket) without
// outgoing copies, has a large receive buffer, and joins fanout group
// fanoutID in mode; a FanoutCPU group hands every packet to its first
// member until SetCPUProgram gives it its program.
//
// With a ring, packets go to a receive ring (TPACKET_V2 frames or
// TPACKET_V3 blocks, see Ring) instead of the receive queue, which the worker maps (worker's rxRing). The ring is set
// up before bind and fanout: setting it later would briefly unhook the
// socket, and re-link it last in the fanout group, out of slot order.
func OpenIngress(ifindex, fanoutID int, mode Fanout, prog []bpf.RawInstruction, ring *Ring) (int, error) {
	if fanoutID < 1 || fanoutID > 0xffff {
		return -1, fmt.Errorf("open input on ifindex %d: fanout id %d out of range 1..65535", ifindex, fanoutID)
	}
	typ, err := fanoutType(mode)
	if err != nil {
		return -1, fmt.Errorf("open input on ifindex %d: %w", ifindex, err)
	}
	if ring != nil {
		if err := ring.Validate(); err != nil {
			return -1, fmt.Errorf("open input on ifindex %d: %w", ifindex, err)
		}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	if err := setUpIngress(fd, ifindex, fanoutID, typ, prog, ring); err != nil {
		if errors.Is(err, prefilter.ErrUnfiltered) {
			return fd, err
		}
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setUpIngress makes the fresh socket fd the ingress socket OpenIngress
// describes; the caller closes fd when it fails, unless the error wraps
// prefilter.ErrUnfiltered: then the socket is set up, without its
// prefilter.
func setUpIngress(fd, ifindex, fanoutID, typ int, prog []bpf.RawInstruction, ring *Ring) error {
	// Before bind: a bound socket could queue a packet without the header.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fmt.Errorf("set PACKET_VNET_HDR on ifindex %d: %w", ifindex, err)
	}
	// An unfiltered socket still relays correctly (userspace filters
	// too): it is set up all the same, and the error goes to the caller.
	unfiltered := prefilter.Attach(fd, prefilter.ForInput(prog, ring != nil))
	if unfiltered != nil && !errors.Is(unfiltered, prefilter.ErrUnfiltered) {
		return fmt.Errorf("attach prefilter on ifindex %d: %w", ifindex, unfiltered)
	}
	if ring != nil {
		if err := setRing(fd, ring); err != nil {
			return fmt.Errorf("set up receive ring on ifindex %d: %w", ifindex, err)
		}
	}
	// The protocol is in network byte order; x/sys/unix does not convert it.
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind AF_PACKET socket to ifindex %d: %w", ifindex, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("set PACKET_IGNORE_OUTGOING on ifindex %d: %w", ifindex, err)
	}
	if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, RcvBufSize); err != nil {
		return fmt.Errorf("set receive buffer on ifindex %d: %w", ifindex, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, fanoutID|(typ|fanoutFlags)<<16); err != nil {
		return fmt.Errorf("join fanout group %d on ifindex %d: %w", fanoutID, ifindex, err)
	}
	if unfiltered != nil {
		return fmt.Errorf("attach prefilter on ifindex %d: %w", ifindex, unfiltered)
	}
	return nil
}

// SetCPUProgram gives the FanoutCPU group that member socket fd belongs to
// the program CPUProgram(cores) (PACKET_FANOUT_DATA): the kernel keeps one
// program per group and swaps it atomically.
func SetCPUProgram(fd int, cores []int) error {
	prog, err := CPUProgram(cores)
	if err != nil {
		return err
	}
	// bpf.RawInstruction has the layout of struct sock_filter.
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	err = unix.SetsockoptSockFprog(fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, &fprog)
	runtime.KeepAlive(prog)
	if err != nil {
		return fmt.Errorf("set the CPU fanout program (PACKET_FANOUT_DATA): %w", err)
	}
	return nil
}

// PacketDrops returns the packets the kernel dropped on AF_PACKET socket
// fd since the last read, by anyone holding the socket: reading
// PACKET_STATISTICS resets the kernel's counters (packet(7)), so callers
// accumulate. The leading fields of struct tpacket_stats and
// tpacket_stats_v3 agree, and the kernel copies no more than asked, so one
// read serves sockets with and without a TPACKET_V3 ring.
func PacketDrops(fd int) (uint64, error) {
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, fmt.Errorf("read PACKET_STATISTICS: %w", err)
	}
	return uint64(st.Drops), nil
}

// setRing gives fd a receive ring of geometry r: a TPACKET_V2 frame ring
// when r has frames, else a TPACKET_V3 block ring.
func setRing(fd int, r *Ring) error {
	if r.FrameSize > 0 {
		return setFrameRing(fd, r)
	}
	return setBlockRing(fd, r)
}

// setBlockRing switches fd to TPACKET_V3 and gives it a receive ring of
// geometry r, one frame per block (V3 packs packets of any size into a
// block; frames only matter to the kernel's arithmetic), each block with a
// private area of RingPrivSize bytes.
func setBlockRing(fd int, r *Ring) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("set PACKET_VERSION TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(r.BlockSize),
		Block_nr:       uint32(r.Blocks),
		Frame_size:     uint32(r.BlockSize),
		Frame_nr:       uint32(r.Blocks),
		Retire_blk_tov: uint32(r.TimeoutMS),
		Sizeof_priv:    RingPrivSize,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("set PACKET_RX_RING (%d blocks of %d bytes): %w", r.Blocks, r.BlockSize, err)
	}
	return nil
}

// setFrameRing switches fd to TPACKET_V2 and gives it a frame ring of
// geometry r. PACKET_COPY_THRESH makes the kernel queue a whole copy of
// every packet larger than a frame (a UDP GSO aggregate, a reassembled
// datagram, a jumbo frame) on the socket's receive queue, where the worker
// reads it when it meets the frame marked TP_STATUS_COPY: nothing is lost
// to the frame size while the receive buffer has room.
func setFrameRing(fd int, r *Ring) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return fmt.Errorf("set PACKET_VERSION TPACKET_V2: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1); err != nil {
		return fmt.Errorf("set PACKET_COPY_THRESH: %w", err)
	}
	req := unix.TpacketReq{
		Block_size: uint32(r.BlockSize),
		Block_nr:   uint32(r.Blocks),
		Frame_size: uint32(r.FrameSize),
		Frame_nr:   uint32(r.Frames()),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("set PACKET_RX_RING (%d frames of %d bytes): %w", r.Frames(), r.FrameSize, err)
	}
	return nil
}

// setBuffer sets a socket buffer size with the *FORCE option, which ignores
// net.core.[rw]mem_max but needs CAP_NET_ADMIN, and falls back to the plain
// option (capped by the sysctl) without it.
func setBuffer(fd, force, plain, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
