package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI pieces from include/uapi/linux/io_uring.h that x/sys/unix does
// not provide. Sizes are asserted in sys_linux_test.go.

// struct io_sqring_offsets (40 bytes).
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// struct io_cqring_offsets (40 bytes).
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// struct io_uring_getevents_arg (24 bytes).
type geteventsArg struct {
	sigmask    uint64
	sigmaskSz  uint32
	minWaitUs  uint32
	timespecPt uint64
}

// Timespec is struct __kernel_timespec (16 bytes), 64-bit on every
// architecture, unlike unix.Timespec on 32-bit systems.
type Timespec struct {
	Sec, Nsec int64
}

// struct io_uring_buf_reg (40 bytes).
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// struct io_uring_buf (16 bytes). In a buffer ring, entry 0's resv field is
// the ring tail.
type ringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	tail uint16
}

const (
	// mmap offsets (IORING_OFF_*).
	offSQRing = 0
	offSQEs   = 0x10000000

	// Features (IORING_FEAT_*) New requires.
	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
	featExtArg     = 1 << 8

	// io_uring_enter flags (IORING_ENTER_*).
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	// io_uring_register opcodes (IORING_REGISTER_*).
	registerProbe          = 8
	registerPbufRing       = 22
	registerUnregisterPbuf = 23

	// SQ ring flags (IORING_SQ_*).
	sqTaskrun = 1 << 2

	// send/recv ioprio flags.
	recvMultishot = 1 << 1 // IORING_RECV_MULTISHOT

	// poll32_events modifier in len (IORING_POLL_ADD_MULTI).
	pollAddMulti = 1 << 0

	// cancel_flags (IORING_ASYNC_CANCEL_*).
	cancelAll = 1 << 0
	cancelFD  = 1 << 1
	cancelAny = 1 << 2
)

func sysSetup(entries uint32, p *params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// sysEnter returns the number of SQEs the kernel consumed. It returns the
// bare errno so that callers can compare it without allocating.
func sysEnter(fd int, toSubmit, minComplete uint32, flags uint32, arg unsafe.Pointer, argSize uintptr) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete),
		uintptr(flags), uintptr(arg), argSize)
	return int(n), errno
}

func sysRegister(fd int, opcode uint32, arg unsafe.Pointer, nrArgs uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(opcode), uintptr(arg),
		uintptr(nrArgs), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
