package uring

import (
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestABILayout pins the Go mirrors of the kernel structs to the sizes and
// offsets of include/uapi/linux/io_uring.h.
func TestABILayout(t *testing.T) {
	var sqe SQE
	var p params
	var b ringBuf
	got := map[string]uintptr{
		"sqe":            unsafe.Sizeof(sqe),
		"sqe.fd":         unsafe.Offsetof(sqe.fd),
		"sqe.off":        unsafe.Offsetof(sqe.off),
		"sqe.addr":       unsafe.Offsetof(sqe.addr),
		"sqe.len":        unsafe.Offsetof(sqe.len),
		"sqe.op_flags":   unsafe.Offsetof(sqe.opFlags),
		"sqe.user_data":  unsafe.Offsetof(sqe.userData),
		"sqe.buf_index":  unsafe.Offsetof(sqe.bufIndex),
		"sqe.file_index": unsafe.Offsetof(sqe.fileIndex),
		"sqe.addr3":      unsafe.Offsetof(sqe.addr3),
		"cqe":            unsafe.Sizeof(CQE{}),
		"params":         unsafe.Sizeof(p),
		"params.sq_off":  unsafe.Offsetof(p.sqOff),
		"params.cq_off":  unsafe.Offsetof(p.cqOff),
		"getevents_arg":  unsafe.Sizeof(geteventsArg{}),
		"timespec":       unsafe.Sizeof(Timespec{}),
		"buf_reg":        unsafe.Sizeof(bufReg{}),
		"buf":            unsafe.Sizeof(b),
		"buf.tail":       unsafe.Offsetof(b.tail),
		"buf.bid":        unsafe.Offsetof(b.bid),
		"msghdr (x/sys)": unsafe.Sizeof(unix.Msghdr{}),
		"iovec (x/sys)":  unsafe.Sizeof(unix.Iovec{}),
	}
	want := map[string]uintptr{
		"sqe": 64, "sqe.fd": 4, "sqe.off": 8, "sqe.addr": 16, "sqe.len": 24, "sqe.op_flags": 28,
		"sqe.user_data": 32, "sqe.buf_index": 40, "sqe.file_index": 44, "sqe.addr3": 48,
		"cqe": 16, "params": 120, "params.sq_off": 40, "params.cq_off": 80,
		"getevents_arg": 24, "timespec": 16, "buf_reg": 40, "buf": 16, "buf.tail": 14, "buf.bid": 12,
		"msghdr (x/sys)": 56, "iovec (x/sys)": 16,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ABI layout (-want +got):\n%s", diff)
	}
}
