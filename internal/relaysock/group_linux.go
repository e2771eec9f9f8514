package relaysock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/prefilter"
)

// IngressGroup is the ingress sockets of one input interface, one member
// per worker slot, opened and joined to one fanout group in slot order, so
// that the member index the kernel picks for a packet (FanoutHash's flow
// hash, FanoutCPU's program) names a slot. The supervisor keeps the group
// for as long as rules use the input, across the lives of the workers: each
// worker of a slot is handed a duplicate of the slot's member (Dup), and
// what the kernel queued on it while no worker read it — its receive queue,
// or the blocks of its ring — waits there for the next worker, as does its
// drop counter.
//
// The order holds for the group's life. The kernel appends a member to the
// group's array when it joins and, when one leaves, moves the last into its
// place (__fanout_link, __fanout_unlink in net/packet/af_packet.c); members
// leave only when their socket is released or its device goes down, and
// when the device comes back up the kernel re-links the device's sockets in
// the order they were created (packet_notifier walks the namespace's packet
// socket list, to which packet_create appends). The supervisor's copies keep
// every member alive; so nothing reorders a group but a member joining
// from outside, which a free group id rules out (FanoutIDFree).
//
// It is not safe for concurrent use.
type IngressGroup struct {
	ifindex, fanoutID int
	mode              Fanout
	cores             []int // by slot
	fds               []int // by slot; -1 once closed
	ring              bool
	// opened is, by slot, the prefilter a member was opened with and
	// what its attach returned, until the member's first Dup: a Dup
	// with the same program attaches nothing (the kernel has it) and
	// reports that result. Later Dups always attach, as a worker may
	// have replaced the filter through its duplicate.
	opened []openedFilter
}

// openedFilter is a member's prefilter from OpenIngress, and its error.
type openedFilter struct {
	prog []bpf.RawInstruction
	err  error // nil, or wraps prefilter.ErrUnfiltered
}

// OpenIngressGroup opens the ingress sockets of ifindex for len(cores)
// worker slots, slot i's worker pinned to cores[i], and joins them to the
// free fanout group fanoutID in mode, each with prog and ring as
// OpenIngress opens them. A FanoutCPU group gets CPUProgram(cores). A group
// id that is not free fails with EBUSY: another group by that id (the
// previous one of this input, still held by a worker that has not closed
// it yet) would take the first members and shift every slot's.
func OpenIngressGroup(ifindex, fanoutID int, mode Fanout, cores []int, prog []bpf.RawInstruction, ring *Ring) (*IngressGroup, error) {
	if len(cores) == 0 {
		return nil, fmt.Errorf("open input on ifindex %d: no worker slots", ifindex)
	}
	free, err := FanoutIDFree(fanoutID)
	if err != nil {
		return nil, fmt.Errorf("open input on ifindex %d: %w", ifindex, err)
	}
	if !free {
		return nil, fmt.Errorf("open input on ifindex %d: fanout group %d has members from before: %w",
			ifindex, fanoutID, syscall.EBUSY)
	}
	g := &IngressGroup{ifindex: ifindex, fanoutID: fanoutID, mode: mode, cores: cores, ring: ring != nil}
	for range cores {
		fd, err := OpenIngress(ifindex, fanoutID, mode, prog, ring)
		if err != nil && !errors.Is(err, prefilter.ErrUnfiltered) {
			g.Close()
			return nil, err
		}
		g.fds = append(g.fds, fd)
		g.opened = append(g.opened, openedFilter{prog: prog, err: err})
	}
	if err := g.setProgram(); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// setProgram gives a FanoutCPU group its program.
func (g *IngressGroup) setProgram() error {
	if g.mode != FanoutCPU {
		return nil
	}
	if err := SetCPUProgram(g.fds[0], g.cores); err != nil {
		return fmt.Errorf("input on ifindex %d: %w", g.ifindex, err)
	}
	return nil
}

// Ring reports whether the members have receive rings.
func (g *IngressGroup) Ring() bool { return g.ring }

// Dup gives slot's member the prefilter prog, as OpenIngress does (the
// kernel swaps filters atomically), and returns a close-on-exec duplicate
// of it for the slot's worker, who owns it. The member stays the group's.
// A member that has prog from its opening is not given it again. As with
// OpenIngress, a member the kernel would not give its prefilter is
// duplicated all the same, with an error wrapping prefilter.ErrUnfiltered.
// A FanoutCPU group gets its program again: a worker can replace the
// group's program through its duplicate (PACKET_FANOUT_DATA needs no
// privilege), and the next worker of any slot restores it.
func (g *IngressGroup) Dup(slot int, prog []bpf.RawInstruction) (int, error) {
	fd, err := g.member(slot)
	if err != nil {
		return -1, err
	}
	var unfiltered error
	if o := g.opened[slot]; o.prog != nil && slices.Equal(o.prog, prog) {
		unfiltered = o.err
	} else if unfiltered = prefilter.Attach(fd, prefilter.ForInput(prog, g.ring)); unfiltered != nil {
		unfiltered = fmt.Errorf("attach prefilter on ifindex %d: %w", g.ifindex, unfiltered)
		if !errors.Is(unfiltered, prefilter.ErrUnfiltered) {
			return -1, unfiltered
		}
	}
	g.opened[slot] = openedFilter{}
	if err := g.setProgram(); err != nil {
		return -1, err
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("duplicate input socket of ifindex %d for worker %d: %w", g.ifindex, slot, err)
	}
	return dup, unfiltered
}

// Drops returns what the kernel dropped on slot's member since anyone last
// read its counters (PacketDrops).
func (g *IngressGroup) Drops(slot int) (uint64, error) {
	fd, err := g.member(slot)
	if err != nil {
		return 0, err
	}
	return PacketDrops(fd)
}

func (g *IngressGroup) member(slot int) (int, error) {
	if slot < 0 || slot >= len(g.fds) || g.fds[slot] < 0 {
		return -1, fmt.Errorf("input of ifindex %d: no member for worker %d", g.ifindex, slot)
	}
	return g.fds[slot], nil
}

// Close closes the group's copies of its members; a member a worker still
// holds stays in the group until the worker closes it too.
func (g *IngressGroup) Close() {
	for i, fd := range g.fds {
		if fd >= 0 {
			unix.Close(fd)
			g.fds[i] = -1
		}
	}
}

// FanoutIDFree reports whether no PACKET_FANOUT group of the caller's
// network namespace has id. It joins the id with PACKET_FANOUT_HASH on a
// throwaway AF_PACKET socket and closes it. The kernel (fanout_add,
// net/packet/af_packet.c) keeps one list of groups per network namespace,
// whatever device they are bound to; joining an existing group fails with
// EINVAL unless type, flags, protocol and device all match, and mcr's
// groups have flags and a device. So the join succeeds only on a free id,
// creating a group that vanishes with the socket. The socket is left
// unbound (it listens on all devices): a socket bound to a device that is
// down is not "running", and the kernel would refuse every join with
// EINVAL, free id or not.
func FanoutIDFree(id int) (bool, error) {
	var proto [2]byte // packet(7): the protocol in network byte order
	binary.BigEndian.PutUint16(proto[:], unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(binary.NativeEndian.Uint16(proto[:])))
	if err != nil {
		return false, fmt.Errorf("probe fanout group %d: open AF_PACKET socket: %w", id, err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, id|unix.PACKET_FANOUT_HASH<<16)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EINVAL):
		return false, nil
	default:
		return false, fmt.Errorf("probe fanout group %d: %w", id, err)
	}
}
