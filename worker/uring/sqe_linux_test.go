package uring

import (
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestPrepEncoding pins each Prep method to the SQE fields the kernel reads
// for its opcode (include/uapi/linux/io_uring.h, io_uring/net.c, rw.c).
func TestPrepEncoding(t *testing.T) {
	var msg unix.Msghdr
	var ts Timespec
	msgAddr := uint64(uintptr(unsafe.Pointer(&msg)))
	tsAddr := uint64(uintptr(unsafe.Pointer(&ts)))
	tests := []struct {
		name string
		prep func(*SQE)
		want SQE
	}{
		{"nop", func(s *SQE) { s.PrepNop() }, SQE{}},
		{"recv", func(s *SQE) { s.PrepRecv(5, 0x1000, 2048, unix.MSG_TRUNC) },
			SQE{opcode: uint8(OpRecv), fd: 5, addr: 0x1000, len: 2048, opFlags: unix.MSG_TRUNC}},
		{"recv multishot keeps BUFFER_SELECT under SetFlags", func(s *SQE) {
			s.PrepRecvMultishot(5, 7, 0)
			s.SetFlags(SQEIOLink)
		}, SQE{opcode: uint8(OpRecv), fd: 5, ioprio: recvMultishot, flags: SQEBufferSelect | SQEIOLink, bufIndex: 7}},
		{"send", func(s *SQE) { s.PrepSend(6, 0x2000, 100, unix.MSG_DONTWAIT) },
			SQE{opcode: uint8(OpSend), fd: 6, addr: 0x2000, len: 100, opFlags: unix.MSG_DONTWAIT}},
		{"sendto", func(s *SQE) { s.PrepSendto(6, 0x2000, 100, 0, 0x3000, 28) },
			SQE{opcode: uint8(OpSend), fd: 6, addr: 0x2000, len: 100, off: 0x3000, fileIndex: 28}},
		{"sendmsg", func(s *SQE) { s.PrepSendmsg(7, &msg, 0) },
			SQE{opcode: uint8(OpSendmsg), fd: 7, addr: msgAddr, len: 1}},
		{"recvmsg", func(s *SQE) { s.PrepRecvmsg(7, &msg, unix.MSG_TRUNC) },
			SQE{opcode: uint8(OpRecvmsg), fd: 7, addr: msgAddr, len: 1, opFlags: unix.MSG_TRUNC}},
		{"read at current position", func(s *SQE) { s.PrepRead(3, 0x4000, 512) },
			SQE{opcode: uint8(OpRead), fd: 3, addr: 0x4000, len: 512, off: ^uint64(0)}},
		{"write at current position", func(s *SQE) { s.PrepWrite(3, 0x4000, 512) },
			SQE{opcode: uint8(OpWrite), fd: 3, addr: 0x4000, len: 512, off: ^uint64(0)}},
		{"poll", func(s *SQE) { s.PrepPollAdd(4, unix.POLLIN) },
			SQE{opcode: uint8(OpPollAdd), fd: 4, opFlags: unix.POLLIN}},
		{"poll multishot", func(s *SQE) { s.PrepPollAddMultishot(4, unix.POLLIN) },
			SQE{opcode: uint8(OpPollAdd), fd: 4, opFlags: unix.POLLIN, len: pollAddMulti}},
		{"timeout", func(s *SQE) { s.PrepTimeout(&ts, 3) },
			SQE{opcode: uint8(OpTimeout), fd: -1, addr: tsAddr, len: 1, off: 3}},
		{"cancel fd", func(s *SQE) { s.PrepCancelFD(9) },
			SQE{opcode: uint8(OpAsyncCancel), fd: 9, opFlags: cancelFD | cancelAll}},
		{"user data", func(s *SQE) { s.SetUserData(0xdeadbeef) }, SQE{userData: 0xdeadbeef}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got SQE
			tt.prep(&got)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(SQE{})); diff != "" {
				t.Errorf("SQE (-want +got):\n%s", diff)
			}
		})
	}
}
