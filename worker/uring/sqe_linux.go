package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// SQE is one submission queue entry, laid out exactly as struct
// io_uring_sqe (64 bytes). Get one from Ring.GetSQE, which zeroes it, call
// one Prep method, optionally SetUserData and SetFlags, then Submit.
//
// Addresses passed to Prep methods are handed to the kernel as integers: the
// memory behind them must not be on the Go heap or stack (use Mmap) and must
// stay valid until the operation's final CQE is reaped.
type SQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64 // also addr2
	addr        uint64
	len         uint32
	opFlags     uint32 // msg_flags, rw_flags, poll32_events, timeout_flags, cancel_flags
	userData    uint64
	bufIndex    uint16 // also buf_group
	personality uint16
	fileIndex   uint32 // also splice_fd_in, addr_len
	addr3       uint64
	_           uint64
}

// SetUserData sets the value the kernel copies into this operation's CQEs.
func (s *SQE) SetUserData(u uint64) { s.userData = u }

// SetFlags adds IOSQE_* flags (SQEIOLink, SQEAsync, ...) to those the Prep
// method set: PrepRecvMultishot sets SQEBufferSelect, and it must stay.
func (s *SQE) SetFlags(f uint8) { s.flags |= f }

func (s *SQE) prep(op Op, fd int, addr uintptr, n uint32, off uint64) {
	s.opcode = uint8(op)
	s.fd = int32(fd)
	s.addr = uint64(addr)
	s.len = n
	s.off = off
}

// PrepNop prepares a no-op; its CQE has Res 0.
func (s *SQE) PrepNop() { s.opcode = uint8(OpNop) }

// PrepRecv prepares recv(2) of up to n bytes into buf. Res is the byte count,
// 0 at end of stream on stream sockets, or -errno.
func (s *SQE) PrepRecv(fd int, buf uintptr, n uint32, msgFlags uint32) {
	s.prep(OpRecv, fd, buf, n, 0)
	s.opFlags = msgFlags
}

// PrepRecvMultishot prepares a multishot recv (IORING_RECV_MULTISHOT, 6.0+)
// that takes a buffer from provided-buffer group bufGroup for each message
// and posts one CQE per message with CQEFMore set and the buffer id
// (CQE.BufferID). The request ends with a CQE without CQEFMore, for example
// Res -ENOBUFS when the group has no buffer left; re-arm it then.
func (s *SQE) PrepRecvMultishot(fd int, bufGroup uint16, msgFlags uint32) {
	s.prep(OpRecv, fd, 0, 0, 0)
	s.opFlags = msgFlags
	s.ioprio = recvMultishot
	s.flags |= SQEBufferSelect
	s.bufIndex = bufGroup
}

// PrepSend prepares send(2) of n bytes from buf on a connected socket.
func (s *SQE) PrepSend(fd int, buf uintptr, n uint32, msgFlags uint32) {
	s.prep(OpSend, fd, buf, n, 0)
	s.opFlags = msgFlags
}

// PrepSendto prepares sendto(2) of n bytes from buf to the socket address at
// addr (addrLen bytes, a raw sockaddr_in or sockaddr_in6), for unconnected
// sockets; it uses the addr2/addr_len fields of IORING_OP_SEND (verified on
// 6.18). The address must stay valid until the CQE, like buf.
func (s *SQE) PrepSendto(fd int, buf uintptr, n uint32, msgFlags uint32, addr uintptr, addrLen uint16) {
	s.PrepSend(fd, buf, n, msgFlags)
	s.off = uint64(addr)
	s.fileIndex = uint32(addrLen)
}

// PrepSendmsg prepares sendmsg(2). msg, its iovecs, their buffers and its
// name must live in non-moving memory (Mmap) until the CQE.
func (s *SQE) PrepSendmsg(fd int, msg *unix.Msghdr, msgFlags uint32) {
	s.prep(OpSendmsg, fd, uintptr(unsafe.Pointer(msg)), 1, 0)
	s.opFlags = msgFlags
}

// PrepRecvmsg prepares recvmsg(2). msg, its iovecs, their buffers and its
// name must live in non-moving memory (Mmap) until the CQE: the kernel writes
// Namelen, Controllen and Flags back into msg when the operation completes.
func (s *SQE) PrepRecvmsg(fd int, msg *unix.Msghdr, msgFlags uint32) {
	s.prep(OpRecvmsg, fd, uintptr(unsafe.Pointer(msg)), 1, 0)
	s.opFlags = msgFlags
}

// PrepRead prepares read(2) of up to n bytes into buf at the current file
// position (offset -1); sockets and pipes ignore the position. Res 0 is end
// of file, e.g. the peer closed a stream socket.
func (s *SQE) PrepRead(fd int, buf uintptr, n uint32) {
	s.prep(OpRead, fd, buf, n, ^uint64(0))
}

// PrepWrite prepares write(2) of n bytes from buf at the current file
// position (offset -1).
func (s *SQE) PrepWrite(fd int, buf uintptr, n uint32) {
	s.prep(OpWrite, fd, buf, n, ^uint64(0))
}

// PrepPollAdd prepares a one-shot poll for events (unix.POLLIN, ...); Res is
// the ready event mask.
func (s *SQE) PrepPollAdd(fd int, events uint32) {
	s.prep(OpPollAdd, fd, 0, 0, 0)
	s.opFlags = events
}

// PrepPollAddMultishot prepares a poll that stays armed (IORING_POLL_ADD_MULTI,
// 5.13+) and posts a CQE with CQEFMore each time fd becomes ready.
func (s *SQE) PrepPollAddMultishot(fd int, events uint32) {
	s.PrepPollAdd(fd, events)
	s.len = pollAddMulti
}

// PrepTimeout prepares a timer that completes with Res -ETIME after the
// relative time in ts, or with Res 0 once count other CQEs were posted
// (count 0: only the time counts). The kernel copies ts during Submit, so ts
// must stay valid until Submit returns.
func (s *SQE) PrepTimeout(ts *Timespec, count uint32) {
	s.prep(OpTimeout, -1, uintptr(unsafe.Pointer(ts)), 1, uint64(count))
}

// PrepCancelFD prepares an IORING_OP_ASYNC_CANCEL of every request on fd
// (IORING_ASYNC_CANCEL_FD|ALL, 5.19+). Each cancelled request completes
// with Res -ECANCELED; this SQE's Res is the number cancelled or -ENOENT.
// Cancel before closing fd: close(2) does not end io_uring requests.
func (s *SQE) PrepCancelFD(fd int) {
	s.prep(OpAsyncCancel, fd, 0, 0, 0)
	s.opFlags = cancelFD | cancelAll
}

// prepCancelAny cancels every request on the ring (IORING_ASYNC_CANCEL_ANY).
func (s *SQE) prepCancelAny() {
	s.prep(OpAsyncCancel, -1, 0, 0, 0)
	s.opFlags = cancelAny
}
