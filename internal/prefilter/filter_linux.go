package prefilter

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Attach installs prog as the socket filter of fd (SO_ATTACH_FILTER).
//
// Attaching to a socket that already has a filter replaces it atomically:
// the kernel publishes the new program with one RCU pointer swap
// (__sk_attach_prog in net/core/filter.c), so each packet meets either the
// old program or the new one, never none. That is how the worker updates the
// filter when the interface's rules change, without closing the socket or
// leaving it unfiltered.
//
// To filter from the first packet, attach before bind(2): a packet socket
// created with protocol 0 receives nothing until it is bound (packet(7)).
// The kernel checks the program; an invalid one fails with EINVAL.
//
// When the kernel refuses a valid program for lack of memory (ENOMEM: the
// socket's option memory, net.core.optmem_max, which has to hold the old
// program and the new one during the swap, or a failed allocation), a
// filter that no longer matches the rules must not stay: it would drop
// datagrams a new rule wants. Attach then puts the guard against
// VLAN-tagged frames alone in its place (a few instructions; if even that
// swap does not fit, it detaches the old program first) and tries the
// program once more. If that fails too, the socket keeps only the guard
// (every untagged packet reaches userspace, which filters anyway, at some
// CPU cost) and the error wraps ErrUnfiltered. If not even the guard can
// be attached, the socket has no filter at all and the error wraps
// ErrUnguarded instead.
func Attach(fd int, prog []bpf.RawInstruction) error {
	err := attach(fd, prog)
	if !errors.Is(err, unix.ENOMEM) {
		return err
	}
	if gerr := attach(fd, guardOnly); gerr != nil {
		if derr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); derr != nil && !errors.Is(derr, unix.ENOENT) {
			return fmt.Errorf("%w; detach the old filter: %v", err, derr)
		}
		if gerr := attach(fd, guardOnly); gerr != nil {
			return fmt.Errorf("%w: %w", ErrUnguarded, gerr)
		}
	}
	if err := attach(fd, prog); err != nil {
		return fmt.Errorf("%w: %w", ErrUnfiltered, err)
	}
	return nil
}

func attach(fd int, prog []bpf.RawInstruction) error {
	if len(prog) == 0 || len(prog) > MaxInstructions {
		return fmt.Errorf("attach filter to fd %d: %d instructions, want 1..%d: %w",
			fd, len(prog), MaxInstructions, unix.EINVAL)
	}
	// bpf.RawInstruction has the layout of struct sock_filter.
	fprog := unix.SockFprog{
		Len:    uint16(len(prog)),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0])),
	}
	err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog)
	runtime.KeepAlive(prog)
	if err != nil {
		return fmt.Errorf("attach filter to fd %d: %w", fd, err)
	}
	return nil
}

// The conversion in Attach relies on the two types having the same size:
// this index is out of range, a compile error, otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(bpf.RawInstruction{})-unsafe.Sizeof(unix.SockFilter{})]
