package uring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// testRing locks the calling test goroutine to its OS thread, as every ring
// owner must (see Ring), and creates a ring that is closed at cleanup. Tests
// create their sockets and buffers before the ring, so cleanup closes the
// ring (cancelling its operations) before releasing them.
func testRing(t *testing.T, cfg *Config) *Ring {
	t.Helper()
	return testRingWith(t, cfg, sysSetup)
}

func testRingWith(t *testing.T, cfg *Config, setup func(uint32, *params) (int, error)) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := newRing(cfg, setup)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring unavailable on this machine: %v", err)
	}
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func socketpair(t *testing.T, typ int) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

func mmap(t *testing.T, size int) []byte {
	t.Helper()
	b, err := Mmap(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Munmap(b); err != nil {
			t.Error(err)
		}
	})
	return b
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

func getSQE(t *testing.T, r *Ring) *SQE {
	t.Helper()
	sqe := r.GetSQE()
	if sqe == nil {
		t.Fatalf("GetSQE() = nil with %d in flight", r.InFlight())
	}
	return sqe
}

// waitCQEs submits and waits until n CQEs were reaped, failing after 2 s.
func waitCQEs(t *testing.T, r *Ring, n int) []CQE {
	t.Helper()
	got := make([]CQE, 0, n)
	buf := make([]CQE, n)
	// SubmitAndWait itself waits up to 50 ms per round.
	netnstest.PollErr(t, 2*time.Second, 0, func() error {
		if _, err := r.SubmitAndWait(1, 50*time.Millisecond); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		k := r.Reap(buf[:n-len(got)])
		got = append(got, buf[:k]...)
		if len(got) < n {
			return fmt.Errorf("reaped %d of %d CQEs: %+v", len(got), n, got)
		}
		return nil
	})
	return got
}

// assertNoCQE checks that nothing more completes within a short wait.
func assertNoCQE(t *testing.T, r *Ring) {
	t.Helper()
	if _, err := r.SubmitAndWait(1, 20*time.Millisecond); err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	var buf [4]CQE
	if n := r.Reap(buf[:]); n != 0 {
		t.Fatalf("unexpected CQEs: %+v", buf[:n])
	}
}

func byUserData(cqes []CQE) []CQE {
	slices.SortFunc(cqes, func(a, b CQE) int { return int(a.UserData) - int(b.UserData) })
	return cqes
}

func TestNewSizesAndSetupInfo(t *testing.T) {
	tests := []struct {
		name           string
		cfg            *Config
		wantSQ, wantCQ uint32
	}{
		{name: "defaults", cfg: nil, wantSQ: 256, wantCQ: 1024},
		{name: "rounded up", cfg: &Config{Entries: 100}, wantSQ: 128, wantCQ: 512},
		{name: "explicit cq", cfg: &Config{Entries: 8, CQEntries: 4096}, wantSQ: 8, wantCQ: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRing(t, tt.cfg)
			sq, cq := r.Entries()
			if sq != tt.wantSQ || cq != tt.wantCQ {
				t.Errorf("Entries() = %d, %d, want %d, %d", sq, cq, tt.wantSQ, tt.wantCQ)
			}
			if flags, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("ring fd flags = %#x, %v; want FD_CLOEXEC", flags, err)
			}
			info := r.SetupInfo()
			full := "flags=single_issuer,defer_taskrun,coop_taskrun,taskrun_flag,cqsize,submit_all"
			switch {
			case info == full+",no_sqarray", info == full:
			case strings.HasPrefix(info, "plain (kernel refused SINGLE_ISSUER|DEFER_TASKRUN: "):
				t.Logf("old kernel: %s", info)
			default:
				t.Errorf("SetupInfo() = %q", info)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(&Config{Entries: 65536})
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("New(Entries 65536) = %v, want a config error", err)
	}
}

func TestSetupFallback(t *testing.T) {
	full := setupFlagsFull
	tests := []struct {
		name      string
		refuse    uint32 // flags the fake kernel refuses
		errno     unix.Errno
		wantTried []uint32
		wantInfo  string
		wantErr   string
	}{
		{name: "6.6+", refuse: 0, wantTried: []uint32{full | setupNoSQArray},
			wantInfo: "flags=single_issuer,defer_taskrun,coop_taskrun,taskrun_flag,cqsize,submit_all,no_sqarray"},
		{name: "no NO_SQARRAY", refuse: setupNoSQArray, errno: unix.EINVAL,
			wantTried: []uint32{full | setupNoSQArray, full},
			wantInfo:  "flags=single_issuer,defer_taskrun,coop_taskrun,taskrun_flag,cqsize,submit_all"},
		{name: "no DEFER_TASKRUN", refuse: setupDeferTaskrun, errno: unix.EINVAL,
			wantTried: []uint32{full | setupNoSQArray, full, setupCQSize},
			wantInfo:  "plain (kernel refused SINGLE_ISSUER|DEFER_TASKRUN: invalid argument)"},
		{name: "io_uring_disabled", refuse: ^uint32(0), errno: unix.EPERM,
			wantTried: []uint32{full | setupNoSQArray},
			wantErr:   "io_uring unavailable: io_uring_setup: operation not permitted"},
		{name: "no syscall", refuse: ^uint32(0), errno: unix.ENOSYS,
			wantTried: []uint32{full | setupNoSQArray},
			wantErr:   "io_uring unavailable: io_uring_setup: function not implemented"},
		{name: "too old for CQSIZE", refuse: ^uint32(0), errno: unix.EINVAL,
			wantTried: []uint32{full | setupNoSQArray, full, setupCQSize},
			wantErr:   "io_uring unavailable: io_uring_setup: invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tried []uint32
			fake := func(entries uint32, p *params) (int, error) {
				tried = append(tried, p.flags)
				if p.cqEntries != 64 || entries != 16 {
					t.Errorf("setup(%d, cq %d), want (16, cq 64)", entries, p.cqEntries)
				}
				if p.flags&tt.refuse != 0 {
					return -1, tt.errno
				}
				return 42, nil
			}
			fd, _, info, err := setupRing(Config{Entries: 16, CQEntries: 64}, fake)
			if diff := cmp.Diff(tt.wantTried, tried); diff != "" {
				t.Errorf("flags tried (-want +got):\n%s", diff)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("setupRing() error = %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, tt.errno) {
					t.Errorf("error %v does not match both ErrUnavailable and %v", err, tt.errno)
				}
				return
			}
			if err != nil || fd != 42 || info != tt.wantInfo {
				t.Errorf("setupRing() = fd %d, %q, %v; want fd 42, %q", fd, info, err, tt.wantInfo)
			}
		})
	}
}

// TestOlderKernelSetups runs real rings set up the way older kernels allow:
// with the SQ index array (before 6.6) and plain (before 6.1).
func TestOlderKernelSetups(t *testing.T) {
	refusing := func(mask uint32) func(uint32, *params) (int, error) {
		return func(entries uint32, p *params) (int, error) {
			if p.flags&mask != 0 {
				return -1, unix.EINVAL
			}
			return sysSetup(entries, p)
		}
	}
	tests := []struct {
		name     string
		refuse   uint32
		wantInfo string
	}{
		{name: "SQ array", refuse: setupNoSQArray,
			wantInfo: "flags=single_issuer,defer_taskrun,coop_taskrun,taskrun_flag,cqsize,submit_all"},
		{name: "plain", refuse: setupDeferTaskrun,
			wantInfo: "plain (kernel refused SINGLE_ISSUER|DEFER_TASKRUN: invalid argument)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := socketpair(t, unix.SOCK_DGRAM)
			buf := mmap(t, 4096)
			r := testRingWith(t, &Config{Entries: 8}, refusing(tt.refuse))
			if got := r.SetupInfo(); got != tt.wantInfo {
				t.Errorf("SetupInfo() = %q, want %q", got, tt.wantInfo)
			}
			// 20 NOPs in batches of 5 wrap the 8-entry SQ and CQ twice.
			for batch := range 4 {
				for i := range 5 {
					sqe := getSQE(t, r)
					sqe.PrepNop()
					sqe.SetUserData(uint64(batch*5 + i))
				}
				for i, c := range waitCQEs(t, r, 5) {
					if c != (CQE{UserData: uint64(batch*5 + i)}) {
						t.Fatalf("batch %d CQE %d = %+v", batch, i, c)
					}
				}
			}
			// A RECV that has to wait, completed by a later SEND.
			copy(buf, "ping")
			getSQE(t, r).PrepRecv(b, addr(buf[1024:]), 1024, 0)
			if _, err := r.Submit(); err != nil {
				t.Fatal(err)
			}
			assertNoCQE(t, r)
			sqe := getSQE(t, r)
			sqe.PrepSend(a, addr(buf), 4, 0)
			sqe.SetUserData(1)
			got := byUserData(waitCQEs(t, r, 2))
			if want := []CQE{{Res: 4}, {UserData: 1, Res: 4}}; !cmp.Equal(want, got) || string(buf[1024:1028]) != "ping" {
				t.Errorf("RECV/SEND: %+v %q, want %+v \"ping\"", got, buf[1024:1028], want)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	r := testRing(t, &Config{Entries: 8})
	err := r.Probe(OpNop, OpSendmsg, OpRecvmsg, OpTimeout, OpPollAdd, OpAsyncCancel, OpRead, OpWrite, OpSend, OpRecv)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
}

func TestNopUserData(t *testing.T) {
	r := testRing(t, &Config{Entries: 8})
	for _, ud := range []uint64{1, 1 << 63, 42} {
		sqe := getSQE(t, r)
		sqe.PrepNop()
		sqe.SetUserData(ud)
	}
	if n, err := r.Submit(); n != 3 || err != nil {
		t.Fatalf("Submit() = %d, %v, want 3, nil", n, err)
	}
	got := waitCQEs(t, r, 3)
	want := []CQE{{UserData: 1}, {UserData: 1 << 63}, {UserData: 42}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CQEs (-want +got):\n%s", diff)
	}
	if r.InFlight() != 0 {
		t.Errorf("InFlight() = %d after reaping everything", r.InFlight())
	}
}

func TestReadStreamUntilPeerClose(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	local, peer := fds[0], fds[1]
	t.Cleanup(func() { unix.Close(local) })
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})

	read := func(ud uint64) {
		sqe := getSQE(t, r)
		sqe.PrepRead(local, addr(buf), uint32(len(buf)))
		sqe.SetUserData(ud)
	}
	if _, err := unix.Write(peer, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	read(1)
	if got := waitCQEs(t, r, 1); got[0] != (CQE{UserData: 1, Res: 5}) || string(buf[:5]) != "hello" {
		t.Fatalf("first READ: %+v %q, want res 5 \"hello\"", got[0], buf[:5])
	}

	read(2)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	assertNoCQE(t, r) // the READ waits for data
	unix.Close(peer)
	if got := waitCQEs(t, r, 1); got[0] != (CQE{UserData: 2, Res: 0}) {
		t.Fatalf("READ after peer close: %+v, want res 0 (EOF)", got[0])
	}
}

func TestSendRecvDatagram(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"1000 bytes", 1000},
		{"4000 bytes", 4000},
	}
	a, b := socketpair(t, unix.SOCK_DGRAM)
	sbuf, rbuf := mmap(t, 4096), mmap(t, 4096)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRing(t, &Config{Entries: 8}) // subtests run on goroutines of their own
			for i := range tt.size {
				sbuf[i] = byte(i*7 + tt.size)
			}
			clear(rbuf)
			recv := getSQE(t, r)
			recv.PrepRecv(b, addr(rbuf), uint32(len(rbuf)), 0)
			recv.SetUserData(1)
			send := getSQE(t, r)
			send.PrepSend(a, addr(sbuf), uint32(tt.size), 0)
			send.SetUserData(2)
			got := byUserData(waitCQEs(t, r, 2))
			want := []CQE{{UserData: 1, Res: int32(tt.size)}, {UserData: 2, Res: int32(tt.size)}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("CQEs (-want +got):\n%s", diff)
			}
			if !bytes.Equal(rbuf[:tt.size], sbuf[:tt.size]) {
				t.Errorf("received bytes differ from sent bytes")
			}
		})
	}
}

func TestSendtoUnconnected(t *testing.T) {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(rx) })
	if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(rx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tx) })
	mem := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})

	// struct sockaddr_in at mem[0:16]: family (host order), port (network order), address.
	port := sa.(*unix.SockaddrInet4).Port
	mem[0], mem[1] = unix.AF_INET, 0
	mem[2], mem[3] = byte(port>>8), byte(port)
	copy(mem[4:8], []byte{127, 0, 0, 1})
	copy(mem[64:], "to 127.0.0.1")
	sqe := getSQE(t, r)
	sqe.PrepSendto(tx, addr(mem[64:]), 12, 0, addr(mem), 16)
	sqe.SetFlags(SQEAsync)
	if got := waitCQEs(t, r, 1); got[0].Res != 12 {
		t.Fatalf("SEND with destination: %+v, want res 12", got[0])
	}
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(rx, buf, unix.MSG_DONTWAIT)
	if err != nil || string(buf[:n]) != "to 127.0.0.1" {
		t.Fatalf("receiver got %q, %v; want %q", buf[:n], err, "to 127.0.0.1")
	}
}

// msgLayout places a msghdr, its iovecs and their buffers in one mapping.
type msgLayout struct {
	msg  *unix.Msghdr
	iovs []unix.Iovec
}

func newMsg(mem []byte, bufs ...[]byte) msgLayout {
	l := msgLayout{
		msg:  (*unix.Msghdr)(unsafe.Pointer(&mem[0])),
		iovs: unsafe.Slice((*unix.Iovec)(unsafe.Pointer(&mem[64])), len(bufs)),
	}
	for i, b := range bufs {
		l.iovs[i].Base = &b[0]
		l.iovs[i].SetLen(len(b))
	}
	l.msg.Iov = &l.iovs[0]
	l.msg.SetIovlen(len(bufs))
	return l
}

func TestSendmsgRecvmsgIovecs(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	mem := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})

	// Sender: "hello, " + "world" from two iovecs. Receiver: 4 + 64 bytes.
	s1, s2 := mem[1024:1031], mem[1100:1105]
	copy(s1, "hello, ")
	copy(s2, "world")
	send := newMsg(mem[0:], s1, s2)
	r1, r2 := mem[2048:2052], mem[2100:2164]
	recv := newMsg(mem[512:], r1, r2)

	sqe := getSQE(t, r)
	sqe.PrepRecvmsg(b, recv.msg, 0)
	sqe.SetUserData(1)
	sqe = getSQE(t, r)
	sqe.PrepSendmsg(a, send.msg, 0)
	sqe.SetUserData(2)
	got := byUserData(waitCQEs(t, r, 2))
	want := []CQE{{UserData: 1, Res: 12}, {UserData: 2, Res: 12}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CQEs (-want +got):\n%s", diff)
	}
	if got := string(r1) + string(r2[:8]); got != "hello, world" {
		t.Errorf("received %q across iovecs, want %q", got, "hello, world")
	}
}

func TestSubmitAndWaitTimeout(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration
		min, max time.Duration
	}{
		{name: "20ms", timeout: 20 * time.Millisecond, min: 20 * time.Millisecond, max: 500 * time.Millisecond},
		{name: "no wait", timeout: 0, min: 0, max: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRing(t, &Config{Entries: 8})
			start := time.Now()
			n, err := r.SubmitAndWait(1, tt.timeout)
			took := time.Since(start)
			if n != 0 || err != nil {
				t.Errorf("SubmitAndWait() = %d, %v, want 0, nil", n, err)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("SubmitAndWait(1, %v) took %v, want within [%v, %v]", tt.timeout, took, tt.min, tt.max)
			}
		})
	}
}

// TestSubmitAndWaitWakesOnCompletion proves that a completion wakes a
// waiter already asleep in io_uring_enter: the datagram is written only
// once the waiting thread is seen blocked in that system call
// (/proc/self/task/TID/syscall and its state in stat), and only if
// SubmitAndWait has not returned yet.
func TestSubmitAndWaitWakesOnCompletion(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	getSQE(t, r).PrepRecv(b, addr(buf), uint32(len(buf)), 0)
	tid := unix.Gettid() // testRing locked this goroutine to its thread
	var returned atomic.Bool
	wrote := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for !blockedInEnter(tid) {
			if returned.Load() {
				wrote <- errors.New("SubmitAndWait returned before the datagram was written")
				return
			}
			if time.Now().After(deadline) {
				wrote <- errors.New("the waiter was never seen asleep in io_uring_enter")
				unix.Write(a, []byte("wake")) // end the wait
				return
			}
			time.Sleep(time.Millisecond)
		}
		if returned.Load() {
			wrote <- errors.New("SubmitAndWait returned before the datagram was written")
			return
		}
		_, err := unix.Write(a, []byte("wake"))
		wrote <- err
	}()
	start := time.Now()
	n, err := r.SubmitAndWait(1, 5*time.Second)
	returned.Store(true)
	took := time.Since(start)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if n != 1 || err != nil {
		t.Fatalf("SubmitAndWait() = %d, %v, want 1, nil", n, err)
	}
	var cqes [1]CQE
	if r.Reap(cqes[:]) != 1 || cqes[0].Res != 4 {
		t.Fatalf("after the wake-up: CQE %+v, want one with res 4", cqes[0])
	}
	if took > time.Second {
		t.Errorf("SubmitAndWait returned %v after it started, want well before its 5 s timeout", took)
	}
}

// blockedInEnter reports whether thread tid of this process is asleep in
// io_uring_enter(2): /proc/self/task/TID/syscall starts with the number of
// the system call the thread is blocked in (proc(5)), and stat's state is
// S (interruptible sleep).
func blockedInEnter(tid int) bool {
	dir := fmt.Sprintf("/proc/self/task/%d/", tid)
	sc, err := os.ReadFile(dir + "syscall")
	if err != nil {
		return false
	}
	nr, _, _ := strings.Cut(string(sc), " ")
	if nr != strconv.Itoa(unix.SYS_IO_URING_ENTER) {
		return false
	}
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	return len(rest) > 1 && rest[1] == 'S'
}

func TestInFlightCap(t *testing.T) {
	r := testRing(t, &Config{Entries: 8, MaxInFlight: 3})
	for range 3 {
		getSQE(t, r).PrepNop()
	}
	if sqe := r.GetSQE(); sqe != nil {
		t.Fatal("GetSQE() at MaxInFlight returned an SQE")
	}
	if _, err := r.SubmitAndWait(3, time.Second); err != nil {
		t.Fatal(err)
	}
	if r.GetSQE() != nil || r.InFlight() != 3 {
		t.Fatalf("before Reap: InFlight() = %d, want 3 and GetSQE() nil", r.InFlight())
	}
	var one [1]CQE
	if n := r.Reap(one[:]); n != 1 {
		t.Fatalf("Reap() = %d, want 1", n)
	}
	if r.InFlight() != 2 || r.GetSQE() == nil {
		t.Fatalf("after Reap: InFlight() = %d, want 2 and an SQE available", r.InFlight())
	}
}

func TestFullSQ(t *testing.T) {
	r := testRing(t, &Config{Entries: 4})
	for range 4 {
		getSQE(t, r).PrepNop()
	}
	if r.GetSQE() != nil {
		t.Fatal("GetSQE() with a full SQ returned an SQE")
	}
	if n, err := r.Submit(); n != 4 || err != nil {
		t.Fatalf("Submit() = %d, %v, want 4, nil", n, err)
	}
	getSQE(t, r).PrepNop()
	if got := waitCQEs(t, r, 5); len(got) != 5 {
		t.Fatalf("reaped %d CQEs, want 5", len(got))
	}
}

func TestRecvMultishotBufRing(t *testing.T) {
	const (
		nbufs   = 4
		bufSize = 256
		group   = 7
	)
	a, b := socketpair(t, unix.SOCK_DGRAM)
	pool := mmap(t, nbufs*bufSize)
	r := testRing(t, &Config{Entries: 8})
	br, err := r.RegisterBufRing(nbufs, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := br.Close(); err != nil {
			t.Error(err)
		}
	})
	provide := func() {
		for i := range nbufs {
			br.Add(addr(pool[i*bufSize:]), bufSize, uint16(i), i)
		}
		br.Advance(nbufs)
	}
	arm := func(ud uint64) {
		sqe := getSQE(t, r)
		sqe.PrepRecvMultishot(b, group, 0)
		sqe.SetUserData(ud)
	}
	send := func(msg string) {
		if _, err := unix.Write(a, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(c CQE, wantMsg string, wantBID uint16) {
		t.Helper()
		bid, ok := c.BufferID()
		if !ok || bid != wantBID || !c.More() || int(c.Res) != len(wantMsg) {
			t.Fatalf("CQE %+v: want res %d, buffer %d, F_MORE", c, len(wantMsg), wantBID)
		}
		if got := string(pool[int(bid)*bufSize:][:c.Res]); got != wantMsg {
			t.Fatalf("buffer %d holds %q, want %q", bid, got, wantMsg)
		}
	}

	provide()
	arm(1)
	for i := range nbufs + 1 {
		send(fmt.Sprintf("message %d", i))
	}
	got := waitCQEs(t, r, nbufs+1)
	for i := range nbufs {
		check(got[i], fmt.Sprintf("message %d", i), uint16(i))
	}
	if last := got[nbufs]; last != (CQE{UserData: 1, Res: -int32(unix.ENOBUFS)}) {
		t.Fatalf("CQE after the buffers ran out: %+v, want res -ENOBUFS without F_MORE", last)
	}
	if r.InFlight() != 0 {
		t.Fatalf("InFlight() = %d after the multishot ended, want 0", r.InFlight())
	}

	// Replenish and re-arm: the message left in the socket arrives.
	provide()
	arm(2)
	got = waitCQEs(t, r, 1)
	check(got[0], fmt.Sprintf("message %d", nbufs), 0)
	send("after re-arm")
	got = waitCQEs(t, r, 1)
	check(got[0], "after re-arm", 1)
	if r.InFlight() != 1 {
		t.Fatalf("InFlight() = %d with the multishot armed, want 1", r.InFlight())
	}

	// Cancelling ends the multishot with a final CQE without F_MORE.
	sqe := getSQE(t, r)
	sqe.PrepCancelFD(b)
	sqe.SetUserData(3)
	got = byUserData(waitCQEs(t, r, 2))
	want := []CQE{{UserData: 2, Res: -int32(unix.ECANCELED)}, {UserData: 3, Res: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CQEs after cancel (-want +got):\n%s", diff)
	}
	if r.InFlight() != 0 {
		t.Errorf("InFlight() = %d after cancel, want 0", r.InFlight())
	}
}

func TestCancelFD(t *testing.T) {
	_, b := socketpair(t, unix.SOCK_DGRAM)
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	for ud := uint64(1); ud <= 2; ud++ {
		sqe := getSQE(t, r)
		sqe.PrepRecv(b, addr(buf), uint32(len(buf)), 0)
		sqe.SetUserData(ud)
	}
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	assertNoCQE(t, r)
	sqe := getSQE(t, r)
	sqe.PrepCancelFD(b)
	sqe.SetUserData(3)
	got := byUserData(waitCQEs(t, r, 3))
	want := []CQE{
		{UserData: 1, Res: -int32(unix.ECANCELED)},
		{UserData: 2, Res: -int32(unix.ECANCELED)},
		{UserData: 3, Res: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CQEs (-want +got):\n%s", diff)
	}
}

// TestSendDontwaitCompletesAtOnce checks what the worker's bound on how
// long a send may hold a packet buffer rests on: a SEND with MSG_DONTWAIT
// to a socket without room completes at once with -EAGAIN, where one
// without the flag waits in the ring until there is room.
func TestSendDontwaitCompletesAtOnce(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	msg := make([]byte, 1024)
	for { // fill a's peer: the socket stays blocking, only these sends are not
		if err := unix.Send(a, msg, unix.MSG_DONTWAIT); errors.Is(err, unix.EAGAIN) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	sqe := getSQE(t, r)
	sqe.PrepSend(a, addr(buf), 1024, unix.MSG_DONTWAIT)
	sqe.SetUserData(1)
	if diff := cmp.Diff([]CQE{{UserData: 1, Res: -int32(unix.EAGAIN)}}, waitCQEs(t, r, 1)); diff != "" {
		t.Errorf("MSG_DONTWAIT send to a full socket (-want +got):\n%s", diff)
	}

	sqe = getSQE(t, r)
	sqe.PrepSend(a, addr(buf), 1024, 0)
	sqe.SetUserData(2)
	assertNoCQE(t, r)
	for { // drain b: room is made when the peer's memory falls below half
		if _, _, err := unix.Recvfrom(b, make([]byte, 2048), unix.MSG_DONTWAIT); errors.Is(err, unix.EAGAIN) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]CQE{{UserData: 2, Res: 1024}}, waitCQEs(t, r, 1)); diff != "" {
		t.Errorf("blocking send once there is room (-want +got):\n%s", diff)
	}
}

// TestOtherThreadGetsEEXIST checks that using a SINGLE_ISSUER ring from a
// second OS thread fails clearly and keeps the SQE queued for the owner.
func TestOtherThreadGetsEEXIST(t *testing.T) {
	r := testRing(t, &Config{Entries: 8})
	if r.flags&setupSingleIssuer == 0 {
		t.Skipf("ring is not SINGLE_ISSUER: %s", r.SetupInfo())
	}
	sqe := getSQE(t, r)
	sqe.PrepNop()
	sqe.SetUserData(9)
	errc := make(chan error)
	go func() {
		// Locked to a thread of its own: the owner's thread is taken.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, err := r.Submit()
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "runtime.LockOSThread") {
		t.Fatalf("Submit() from another thread = %v, want EEXIST mentioning runtime.LockOSThread", err)
	}
	if got := waitCQEs(t, r, 1); got[0] != (CQE{UserData: 9}) {
		t.Fatalf("owner got %+v, want the queued NOP (user data 9)", got[0])
	}
}

func TestCloseCancelsInFlight(t *testing.T) {
	_, b := socketpair(t, unix.SOCK_DGRAM)
	buf := mmap(t, 4096)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(&Config{Entries: 8})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	getSQE(t, r).PrepRecv(b, addr(buf), uint32(len(buf)), 0)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Close took %v waiting for the cancelled RECV", took)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteToPipe(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	copy(buf, "through the pipe")
	getSQE(t, r).PrepWrite(p[1], addr(buf), 16)
	if got := waitCQEs(t, r, 1); got[0].Res != 16 {
		t.Fatalf("WRITE: %+v, want res 16", got[0])
	}
	got := make([]byte, 64)
	n, err := unix.Read(p[0], got)
	if err != nil || string(got[:n]) != "through the pipe" {
		t.Fatalf("read %q, %v from the pipe, want %q", got[:n], err, "through the pipe")
	}
}

func TestTimeoutOp(t *testing.T) {
	mem := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	ts := (*Timespec)(unsafe.Pointer(&mem[0]))
	ts.Nsec = int64(10 * time.Millisecond)
	sqe := getSQE(t, r)
	sqe.PrepTimeout(ts, 0)
	sqe.SetUserData(5)
	start := time.Now()
	got := waitCQEs(t, r, 1)
	if got[0] != (CQE{UserData: 5, Res: -int32(unix.ETIME)}) {
		t.Fatalf("TIMEOUT: %+v, want res -ETIME", got[0])
	}
	if took := time.Since(start); took < 10*time.Millisecond {
		t.Errorf("TIMEOUT completed after %v, want at least 10ms", took)
	}
}

func TestPollAdd(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	r := testRing(t, &Config{Entries: 8})
	drain := func() {
		var buf [64]byte
		if _, err := unix.Read(b, buf[:]); err != nil {
			t.Fatal(err)
		}
	}
	unix.Write(a, []byte("x"))
	getSQE(t, r).PrepPollAdd(b, unix.POLLIN)
	if got := waitCQEs(t, r, 1); got[0] != (CQE{Res: unix.POLLIN}) {
		t.Fatalf("one-shot poll: %+v, want res POLLIN without F_MORE", got[0])
	}
	drain()

	sqe := getSQE(t, r)
	sqe.PrepPollAddMultishot(b, unix.POLLIN)
	sqe.SetUserData(1)
	for i := range 2 {
		unix.Write(a, []byte("x"))
		if got := waitCQEs(t, r, 1); got[0] != (CQE{UserData: 1, Res: unix.POLLIN, Flags: CQEFMore}) {
			t.Fatalf("multishot poll wakeup %d: %+v, want res POLLIN with F_MORE", i, got[0])
		}
		drain()
	}
	getSQE(t, r).PrepCancelFD(b)
	got := byUserData(waitCQEs(t, r, 2))
	if want := []CQE{{Res: 1}, {UserData: 1, Res: -int32(unix.ECANCELED)}}; !cmp.Equal(want, got) {
		t.Errorf("after cancel: %+v, want %+v", got, want)
	}
}

// TestDeferredCompletion shows DEFER_TASKRUN at work: a RECV woken by data
// is only posted when the owner enters the kernel.
func TestDeferredCompletion(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	buf := mmap(t, 4096)
	r := testRing(t, &Config{Entries: 8})
	if r.flags&setupDeferTaskrun == 0 {
		t.Skipf("ring is not DEFER_TASKRUN: %s", r.SetupInfo())
	}
	getSQE(t, r).PrepRecv(b, addr(buf), uint32(len(buf)), 0)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	unix.Write(a, []byte("data"))
	netnstest.Poll(t, 2*time.Second, time.Millisecond, "TaskWorkPending() after the data arrived", r.TaskWorkPending)
	if n := r.Ready(); n != 0 {
		t.Fatalf("Ready() = %d before entering the kernel, want 0", n)
	}
	if _, err := r.SubmitAndWait(0, 0); err != nil {
		t.Fatal(err)
	}
	if n := r.Ready(); n != 1 || r.TaskWorkPending() {
		t.Fatalf("after SubmitAndWait(0, 0): Ready() = %d, TaskWorkPending() = %v; want 1, false", n, r.TaskWorkPending())
	}
}

func TestHotPathAllocs(t *testing.T) {
	a, b := socketpair(t, unix.SOCK_DGRAM)
	pool := mmap(t, 4*256)
	r := testRing(t, &Config{Entries: 16})
	br, err := r.RegisterBufRing(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	cqes := make([]CQE, 16)
	tests := []struct {
		name string
		run  func()
	}{
		{"nop batch submit+wait+reap", func() {
			for i := range 8 {
				sqe := r.GetSQE()
				sqe.PrepNop()
				sqe.SetUserData(uint64(i))
			}
			r.Submit()
			r.SubmitAndWait(8, time.Second)
			r.Reap(cqes)
		}},
		{"wait that times out", func() { r.SubmitAndWait(1, time.Microsecond) }},
		{"send and recv", func() {
			r.GetSQE().PrepSend(a, addr(pool), 64, 0)
			r.GetSQE().PrepRecv(b, addr(pool[256:]), 256, 0)
			r.SubmitAndWait(2, time.Second)
			r.Reap(cqes)
		}},
		{"buffer ring refill", func() {
			br.Add(addr(pool), 256, 0, 0)
			br.Advance(1)
		}},
	}
	for _, tt := range tests { // no t.Run: the ring belongs to this goroutine
		if allocs := testing.AllocsPerRun(100, tt.run); allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, allocs)
		}
	}
	if r.InFlight() != 0 {
		t.Errorf("InFlight() = %d after the runs, want 0", r.InFlight())
	}
}

func BenchmarkNopBatch64(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(&Config{Entries: 64})
	if errors.Is(err, ErrUnavailable) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cqes := make([]CQE, 64)
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			r.GetSQE().PrepNop()
		}
		if _, err := r.SubmitAndWait(64, time.Second); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < 64; got += r.Reap(cqes) {
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/nop")
}
