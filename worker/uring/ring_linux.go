package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring is one io_uring instance: a submission queue of SQEs, a completion
// queue of CQEs, and the count of operations in flight between them.
//
// A Ring is owned by a single goroutine that MUST call runtime.LockOSThread
// before New and stay locked until after Close. With SINGLE_ISSUER the kernel
// binds the ring to the creating OS thread and refuses every other thread
// with EEXIST; with DEFER_TASKRUN completions are only posted while that
// thread waits in SubmitAndWait. A Ring has no locks: never share it between
// goroutines, and do not use it after Close. The ring fd is close-on-exec
// (the kernel installs it with O_CLOEXEC).
type Ring struct {
	fd    int
	flags uint32 // setup flags the kernel accepted
	info  string

	ringMem []byte // SQ and CQ rings (IORING_FEAT_SINGLE_MMAP)
	sqeMem  []byte // SQE array
	argMem  []byte // getevents arg and its timespec, read by the kernel in enter

	sqHead    *uint32 // written by the kernel
	sqTail    *uint32 // written by us, read by the kernel
	sqFlags   *uint32 // written by the kernel
	sqMask    uint32
	sqEntries uint32
	sqes      []SQE
	sqeTail   uint32 // next SQE to hand out; published to *sqTail on submit

	cqHead    *uint32 // written by us
	cqTail    *uint32 // written by the kernel
	cqMask    uint32
	cqEntries uint32
	cqes      []CQE

	arg *geteventsArg
	ts  *Timespec

	inFlight    int // SQEs handed out whose final CQE was not reaped yet
	maxInFlight int

	bufRings []*BufRing // registered, not yet closed
}

// setupFlagsFull is what New asks for first: a ring driven by one thread
// that runs completion work only when it asks for events.
const setupFlagsFull = setupSingleIssuer | setupDeferTaskrun | setupCoopTaskrun | setupTaskrunFlag |
	setupCQSize | setupSubmitAll

// requiredFeatures are the IORING_FEAT_* bits this package relies on (5.11+):
// one mmap for both rings, no dropped CQEs on overflow, and the timeout
// argument of io_uring_enter.
const requiredFeatures = featSingleMmap | featNoDrop | featExtArg

// New creates a Ring. The calling goroutine must already be locked to its OS
// thread with runtime.LockOSThread and must stay locked for the ring's life
// (see Ring).
//
// New first asks for SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN|TASKRUN_FLAG|
// CQSIZE|SUBMIT_ALL plus NO_SQARRAY (6.6+), then without NO_SQARRAY, and if
// the kernel still answers EINVAL (before 6.1), falls back to a plain CQSIZE
// ring; SetupInfo says which. Errors the kernel uses to refuse io_uring as a
// whole match ErrUnavailable and keep the errno.
func New(cfg *Config) (*Ring, error) { return newRing(cfg, sysSetup) }

// newRing is New with the io_uring_setup call passed in, so tests can play
// an older kernel.
func newRing(cfg *Config, setup func(uint32, *params) (int, error)) (*Ring, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	fd, p, info, err := setupRing(c, setup)
	if err != nil {
		return nil, err
	}
	r := &Ring{fd: fd, flags: p.flags, info: info}
	if p.features&requiredFeatures != requiredFeatures {
		r.Close()
		return nil, fmt.Errorf("%w: kernel features %#x lack SINGLE_MMAP|NODROP|EXT_ARG (Linux 5.11+)",
			ErrUnavailable, p.features)
	}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	r.maxInFlight = c.MaxInFlight
	if r.maxInFlight == 0 {
		r.maxInFlight = int(r.cqEntries)
	}
	return r, nil
}

// setupRing calls io_uring_setup with the best flags the kernel accepts.
func setupRing(c Config, setup func(uint32, *params) (int, error)) (int, params, string, error) {
	var refused error
	for _, flags := range []uint32{setupFlagsFull | setupNoSQArray, setupFlagsFull} {
		p := params{flags: flags, cqEntries: c.CQEntries}
		fd, err := setup(c.Entries, &p)
		if err == nil {
			return fd, p, "flags=" + setupFlagsString(flags), nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return -1, p, "", fmt.Errorf("%w: io_uring_setup: %w", ErrUnavailable, err)
		}
		refused = err
	}
	p := params{flags: setupCQSize, cqEntries: c.CQEntries}
	fd, err := setup(c.Entries, &p)
	if err != nil {
		return -1, p, "", fmt.Errorf("%w: io_uring_setup: %w", ErrUnavailable, err)
	}
	return fd, p, fmt.Sprintf("plain (kernel refused SINGLE_ISSUER|DEFER_TASKRUN: %v)", refused), nil
}

// mapRings maps the rings at the offsets the kernel returned in p.
func (r *Ring) mapRings(p *params) error {
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	var err error
	r.ringMem, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	if r.argMem, err = Mmap(unix.Getpagesize()); err != nil {
		return err
	}

	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.ringMem[off])) }
	r.sqHead, r.sqTail, r.sqFlags = u32(p.sqOff.head), u32(p.sqOff.tail), u32(p.sqOff.flags)
	r.sqMask, r.sqEntries = *u32(p.sqOff.ringMask), p.sqEntries
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.sqeTail = *r.sqTail
	if p.flags&setupNoSQArray == 0 {
		// Without NO_SQARRAY the kernel reads SQE indexes from this array;
		// an identity map lets the SQE ring be used as if there were none.
		array := unsafe.Slice(u32(p.sqOff.array), p.sqEntries)
		for i := range array {
			array[i] = uint32(i)
		}
	}

	r.cqHead, r.cqTail = u32(p.cqOff.head), u32(p.cqOff.tail)
	r.cqMask, r.cqEntries = *u32(p.cqOff.ringMask), p.cqEntries
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.ringMem[p.cqOff.cqes])), p.cqEntries)

	r.arg = (*geteventsArg)(unsafe.Pointer(&r.argMem[0]))
	r.ts = (*Timespec)(unsafe.Pointer(&r.argMem[unsafe.Sizeof(geteventsArg{})]))
	r.arg.timespecPt = uint64(uintptr(unsafe.Pointer(r.ts)))
	return nil
}

// SetupInfo describes the ring New obtained, for the start-up log: either
// "flags=single_issuer,defer_taskrun,..." or "plain (kernel refused ...)".
func (r *Ring) SetupInfo() string { return r.info }

// Entries returns the SQ and CQ sizes the kernel granted.
func (r *Ring) Entries() (sq, cq uint32) { return r.sqEntries, r.cqEntries }

// InFlight returns the number of operations handed out by GetSQE whose final
// CQE has not been reaped yet.
func (r *Ring) InFlight() int { return r.inFlight }

// Ready returns the number of CQEs Reap would return now, without entering
// the kernel.
func (r *Ring) Ready() int { return int(atomic.LoadUint32(r.cqTail) - *r.cqHead) }

// TaskWorkPending reports whether the kernel holds completion work that
// only the owner thread's next SubmitAndWait will turn into CQEs
// (IORING_SQ_TASKRUN, from SETUP_TASKRUN_FLAG). On a plain ring it is
// always false.
func (r *Ring) TaskWorkPending() bool { return atomic.LoadUint32(r.sqFlags)&sqTaskrun != 0 }

// GetSQE returns the next free SQE, zeroed and counted as in flight, or nil
// when the SQ is full (Submit, then retry) or MaxInFlight operations are in
// flight (reap first). The SQE goes to the kernel with the next Submit or
// SubmitAndWait; prepare it before then.
func (r *Ring) GetSQE() *SQE {
	if r.inFlight >= r.maxInFlight {
		return nil
	}
	return r.nextSQE()
}

// nextSQE is GetSQE without the in-flight cap.
func (r *Ring) nextSQE() *SQE {
	if r.sqeTail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	*sqe = SQE{}
	r.sqeTail++
	r.inFlight++
	return sqe
}

// Queued returns how many prepared SQEs the kernel has not consumed yet:
// 0 once a Submit or SubmitAndWait has taken them all.
func (r *Ring) Queued() int { return int(r.sqeTail - atomic.LoadUint32(r.sqHead)) }

// flush publishes the prepared SQEs to the kernel and returns how many it
// has not consumed yet. SQEs a failed enter left unconsumed are counted
// again because the kernel's head did not move past them.
func (r *Ring) flush() uint32 {
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// Submit hands prepared SQEs to the kernel without waiting and returns how
// many it consumed. On error, and on the transient EINTR/EAGAIN/EBUSY (which
// return 0, nil), unconsumed SQEs stay queued for the next call.
func (r *Ring) Submit() (int, error) {
	toSubmit := r.flush()
	if toSubmit == 0 {
		return 0, nil
	}
	return enterResult(sysEnter(r.fd, toSubmit, 0, 0, nil, 0))
}

// SubmitAndWait submits prepared SQEs, runs the ring's deferred completion
// work, and waits until minComplete CQEs are ready to Reap or timeout passed.
// minComplete 0 or timeout 0 does not wait (but still posts finished
// completions); a negative timeout waits without limit. It returns the number of SQEs consumed, not
// the number of CQEs. A timeout, EINTR, EAGAIN and EBUSY are not errors:
// they return (0, nil) with unconsumed SQEs kept queued. Note that when SQEs
// were submitted the kernel reports the count even if it then timed out, so
// drive periodic work from a clock, not from the return value.
func (r *Ring) SubmitAndWait(minComplete uint32, timeout time.Duration) (int, error) {
	toSubmit := r.flush()
	flags := uint32(enterGetEvents)
	var arg unsafe.Pointer
	var argSize uintptr
	switch {
	case timeout == 0:
		minComplete = 0
	case timeout > 0:
		// The kernel reads arg and *arg.ts during the call; both live in
		// argMem, outside the Go heap.
		r.ts.Sec, r.ts.Nsec = int64(timeout/time.Second), int64(timeout%time.Second)
		flags |= enterExtArg
		arg, argSize = unsafe.Pointer(r.arg), unsafe.Sizeof(geteventsArg{})
	}
	return enterResult(sysEnter(r.fd, toSubmit, minComplete, flags, arg, argSize))
}

// enterResult turns io_uring_enter's result into SubmitAndWait's.
func enterResult(n int, errno unix.Errno) (int, error) {
	switch errno {
	case 0:
		return n, nil
	case unix.ETIME, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		return 0, nil
	case unix.EEXIST:
		return 0, wrongThread("io_uring_enter", errno)
	}
	return 0, fmt.Errorf("io_uring_enter: %w", errno)
}

// wrongThread explains the EEXIST SINGLE_ISSUER rings return to other threads.
func wrongThread(op string, errno error) error {
	return fmt.Errorf("%s from a thread other than the ring's creator "+
		"(lock the owning goroutine with runtime.LockOSThread before New): %w", op, errno)
}

// Reap copies up to len(cqes) ready CQEs into cqes, marks them consumed, and
// returns how many it copied. Every CQE without CQEFMore ends one in-flight
// operation. Reap does not enter the kernel: with DEFER_TASKRUN, call
// SubmitAndWait first to have completions posted.
func (r *Ring) Reap(cqes []CQE) int {
	head := *r.cqHead // only this goroutine writes it
	n := min(atomic.LoadUint32(r.cqTail)-head, uint32(len(cqes)))
	for i := range n {
		c := r.cqes[(head+i)&r.cqMask]
		cqes[i] = c
		if c.Flags&CQEFMore == 0 {
			r.inFlight--
		}
	}
	atomic.StoreUint32(r.cqHead, head+n)
	return int(n)
}

// Probe asks the kernel which opcodes it supports (IORING_REGISTER_PROBE,
// 5.6+) and returns a *MissingOpsError naming every one of ops it lacks,
// e.g. "io_uring: kernel lacks opcodes RECV, SEND_ZC". Errors match
// ErrUnavailable. Call it once at start-up, from the owner thread.
func (r *Ring) Probe(ops ...Op) error {
	buf := make([]byte, probeHeaderSize+probeMaxOps*probeOpSize)
	if err := sysRegister(r.fd, registerProbe, unsafe.Pointer(&buf[0]), probeMaxOps); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return wrongThread("io_uring_register PROBE", err)
		}
		return fmt.Errorf("%w: io_uring_register PROBE: %w", ErrUnavailable, err)
	}
	return parseProbe(buf, ops)
}

// Close cancels the operations still in flight and waits up to a second for
// their final CQEs, so that the memory they use may be unmapped once Close
// returns; completions are discarded. It then closes the ring, unmaps it and
// any BufRing not closed yet. Call it from the owner thread; a second call
// does nothing.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	if r.sqes != nil {
		r.drain()
	}
	err := unix.Close(r.fd)
	r.fd = -1
	for _, b := range r.bufRings {
		b.unmap()
	}
	r.bufRings = nil
	for _, mem := range [][]byte{r.sqeMem, r.ringMem} {
		if mem != nil {
			_ = unix.Munmap(mem)
		}
	}
	if r.argMem != nil {
		_ = Munmap(r.argMem)
	}
	*r = Ring{fd: -1, info: r.info}
	if err != nil {
		return fmt.Errorf("close io_uring: %w", err)
	}
	return nil
}

// drain cancels every in-flight operation (IORING_ASYNC_CANCEL_ANY, 5.19+)
// and reaps until their final CQEs arrived or a second passed.
func (r *Ring) drain() {
	if r.inFlight == 0 {
		return
	}
	sqe := r.nextSQE()
	if sqe == nil {
		_, _ = r.Submit()
		sqe = r.nextSQE()
	}
	if sqe != nil {
		sqe.prepCancelAny()
	}
	var cqes [32]CQE
	deadline := time.Now().Add(time.Second)
	for r.inFlight > 0 && time.Now().Before(deadline) {
		if _, err := r.SubmitAndWait(1, 50*time.Millisecond); err != nil {
			return
		}
		r.Reap(cqes[:])
	}
}
