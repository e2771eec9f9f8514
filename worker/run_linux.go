package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/prefilter"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/tracing"
)

// backend is the I/O half of the event loop; the dispatcher, rule database
// and reporter are shared.
type backend interface {
	name() string
	// addInput starts receiving on the freshly opened socket of in.
	addInput(in *input) error
	// removeInput stops receiving on in; its socket is closed after.
	removeInput(in *input)
	// poll waits up to timeout for I/O, forwards every packet received,
	// feeds command bytes to the worker's commands and sets w.eof at the
	// end of the command stream. An error ends the worker.
	poll(timeout time.Duration) error
	// sync hands every queued operation to the kernel, so that sockets
	// may be closed and their numbers reused.
	sync()
	// reclaim sends what is queued and handles the completions ready, so
	// that copy buffers held only by finished sends become free; called
	// in the middle of a dispatch.
	reclaim()
	close()
}

// tickObserver, when set (by tests, before Run), is told how long each
// periodic tick kept the event loop from its packets, and how much of that
// the stats snapshot took.
var tickObserver func(tick, report time.Duration)

// worker is one worker process's state, owned by the event loop goroutine.
type worker struct {
	cfg  Config
	log  *slog.Logger
	logw *recordWriter
	db   *ruleDB
	d    dispatcher
	cmds *commands
	sock *relaysock.Client
	rep  reporter
	b    backend
	eof  bool // the command socket reached end of file

	rings   ringTable // the inputs' receive rings
	mod     moderator // wake-up moderation of frame rings
	iter    blockIter // scratch of forwardBlock
	copies  copyPool  // packets larger than a frame of a frame ring
	discard [1]byte   // what forwardCopy reads a packet into when no copy buffer is free

	lastRetry time.Time
	// sockBroken and sockResyncs are the socket stream's state as last
	// logged (noteSocketStream).
	sockBroken  bool
	sockResyncs uint64
}

// Run runs one worker's event loop on the calling goroutine until the
// supervisor sends Shutdown or closes the command socket, and then returns
// nil after closing every socket it opened (not the inherited fds). It
// returns an error only when the loop cannot start or its I/O fails.
//
// The goroutine is locked to its OS thread for the whole run: the io_uring
// is bound to the thread that created it (IORING_SETUP_SINGLE_ISSUER) and
// sched_setaffinity(2) pins threads, not processes.
func Run(cfg Config) error {
	c, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A worker started confined to one CPU gets one P. When the runtime
	// runs something of its own on it (a GC worker, the scavenger) while
	// the loop's thread sleeps in io_uring_enter, the thread finds no P
	// when a packet wakes it and waits for Go's preemption, up to 10 ms.
	// A second P lets it run at once; the kernel shares the core.
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	w, err := newWorker(c)
	if err != nil {
		return err
	}
	defer w.close()
	return w.run()
}

func newWorker(cfg Config) (*worker, error) {
	for _, fd := range []int{cfg.StatsFD, cfg.LogFD} {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("make fd %d non-blocking: %w", fd, err)
		}
		// Best effort: a larger pipe absorbs a large snapshot or a burst
		// of logs while the supervisor is busy (pipe-max-size caps it).
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, 1<<20)
	}
	w := &worker{cfg: cfg, logw: &recordWriter{write: fdWriter(cfg.LogFD)}, mod: moderator{maxNap: cfg.Moderation}}
	w.log = newLogger(w.logw, cfg.ID)
	// The loop's thread sleeps for moderation naps of tens of
	// microseconds and waits with io_uring timeouts: the default 50 µs
	// of timer slack would stretch each.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	if cfg.Core >= 0 {
		if err := pin(cfg.Core); err != nil {
			w.log.Warn("cannot pin to core", "core", cfg.Core, "err", err)
		}
	}
	sock, err := relaysock.NewClient(cfg.SocketFD)
	if err != nil {
		return nil, err
	}
	w.sock = sock
	w.db = newRuleDB(w, w.log)
	w.db.gsoSegs = gsoSegments(w.log)
	w.d.db = w.db
	w.cmds = newCommands(w.log)
	if err := w.checkPrivileges(); err != nil {
		return nil, err
	}
	b, err := w.openBackend()
	if err != nil {
		return nil, err
	}
	w.b = b
	w.rep = reporter{worker: cfg.ID, pid: os.Getpid(), backend: b.name(), log: w.log,
		fw: frameWriter{write: fdWriter(cfg.StatsFD)}}
	return w, nil
}

// checkPrivileges makes sure, when the worker was told its user, that it
// holds no privilege, and logs why it refuses to run otherwise.
func (w *worker) checkPrivileges() error {
	if w.cfg.User == "" {
		return nil
	}
	if err := checkUnprivileged(w.cfg.User); err != nil {
		w.log.Error("refusing to run with privileges", "user", w.cfg.User, "err", err)
		return fmt.Errorf("worker privileges: %w", err)
	}
	w.log.Info("running unprivileged", "user", w.cfg.User, "uid", os.Getuid(), "gid", os.Getgid())
	if os.Getenv(probeEnv) == "1" {
		w.log.Info("privilege probe", "af_packet", fmt.Sprint(probeRawSocket()))
	}
	return nil
}

// openBackend opens the configured backend; auto prefers io_uring and says
// why when it falls back.
func (w *worker) openBackend() (backend, error) {
	switch w.cfg.Backend {
	case BackendMmsg:
		w.log.Info("backend chosen", "backend", BackendMmsg, "reason", "configured")
		return newMmsg(w)
	case BackendUring:
		b, err := newUring(w)
		if err != nil {
			return nil, err
		}
		w.log.Info("backend chosen", "backend", BackendUring, "reason", "configured", "ring", b.ring.SetupInfo(), "send_with_address", b.sendto)
		return b, nil
	}
	b, err := newUring(w)
	if err == nil {
		w.log.Info("backend chosen", "backend", BackendUring, "reason", "io_uring available", "ring", b.ring.SetupInfo(), "send_with_address", b.sendto)
		return b, nil
	}
	w.log.Warn("backend chosen", "backend", BackendMmsg, "reason", err)
	return newMmsg(w)
}

// run is the event loop: wait for I/O and forward, apply commands between
// batches, report every stats interval.
//
//	start ──► running ──Shutdown──► final snapshot ──► return nil
//	             │ ▲
//	 I/O, tick ──┘ └── commands applied between batches
//	             │
//	             └──command socket EOF (supervisor gone)──► return nil
func (w *worker) run() error {
	w.log.Info("worker started", "pid", os.Getpid(), "core", w.cfg.Core, "backend", w.b.name(), "busy_poll", w.cfg.BusyPoll)
	interval := w.cfg.StatsInterval
	next := time.Now().Add(interval)
	for {
		timeout := max(time.Until(next), 0)
		if w.rep.copying {
			timeout = 0 // the snapshot's next rules, after what came meanwhile
		}
		if w.cfg.BusyPoll {
			// Never sleep: the poll only collects completions and the
			// dispatch finds frames as the kernel writes them.
			timeout = 0
		}
		rx := w.d.c.RxPackets
		if err := w.b.poll(timeout); err != nil {
			return err
		}
		if w.cfg.BusyPoll && w.d.c.RxPackets == rx {
			// Nothing came: let whatever else is runnable on the core
			// go first. The kernel's receive work for the inputs often
			// runs there (ksoftirqd once it is behind), and spinning
			// through its time slice would delay exactly the packets
			// the worker waits for. With nothing else to run this
			// returns at once.
			_, _, _ = unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
		if w.cmds.fed {
			w.b.sync()
			if w.cmds.apply(w.db) {
				w.log.Info("shutdown requested")
				w.finalReport()
				return nil
			}
			// Sockets the new rules share with the old ones may have
			// missed an MTU change.
			w.refreshGSO()
		}
		if w.eof {
			w.log.Info("command socket closed: supervisor gone")
			return nil
		}
		now := time.Now()
		// No nap while a snapshot is being copied: a large ruleset
		// would take a nap per step and its copy outlast the interval.
		if nap := w.napAfter(now); nap > 0 && !w.rep.copying {
			w.b.sync() // the batch's sends leave before the nap, not after
			napFor(nap)
		}
		if now.Before(next) {
			// A verdict applied as soon as it is back frees the trace
			// events a sent snapshot carried, so the tracers' rings
			// take new ones for the whole of the next interval.
			w.rep.collect(w.db, &w.d.c, nil)
			w.rep.step(w.db)
			continue
		}
		w.tick(now)
		if next = next.Add(interval); next.Before(now) {
			next = now.Add(interval)
		}
	}
}

// napAfter returns how long to nap after a batch (moderator): 0 with
// --busy-poll or without frame rings.
func (w *worker) napAfter(now time.Time) time.Duration {
	if w.cfg.BusyPoll || !w.rings.hasFrames() {
		return 0
	}
	return w.mod.observe(now, w.d.c.RxPackets)
}

// tick does the periodic work: kernel drop counters, retrying sockets that
// failed to open (every Config.SocketRetry), and the stats snapshot.
func (w *worker) tick(now time.Time) {
	var start, rep time.Time
	if tickObserver != nil {
		start = time.Now()
	}
	for _, in := range w.db.inputs {
		if in.fd >= 0 {
			w.countDrops(in)
		}
	}
	if now.Sub(w.lastRetry) >= w.cfg.SocketRetry {
		w.lastRetry = now
		w.copies.mapFailed = false
		w.b.sync()
		w.db.retry()
		w.refreshGSO()
	}
	w.noteSocketStream()
	w.d.c.LogsDropped = w.logw.dropped
	w.d.c.SocketErrors, w.d.c.SocketResyncs = w.sock.Errors(), w.sock.Resyncs()
	if tickObserver != nil {
		rep = time.Now()
	}
	w.rep.report(now, w.db, &w.d.c, w.ringUsage())
	if tickObserver != nil {
		end := time.Now()
		tickObserver(end.Sub(start), end.Sub(rep))
	}
}

// noteSocketStream logs when the socket stream to the supervisor lost its
// framing and when it was resynchronised, once per change.
func (w *worker) noteSocketStream() {
	if r := w.sock.Resyncs(); r != w.sockResyncs {
		w.sockResyncs = r
		w.log.Info("socket stream to the supervisor resynchronised", "resyncs", r)
	}
	err := w.sock.Broken()
	if broken := err != nil; broken != w.sockBroken {
		w.sockBroken = broken
		if broken {
			w.log.Warn("socket stream to the supervisor out of frame; the next socket request resynchronises it", "err", err)
		}
	}
}

// finalReport sends a last snapshot and waits up to a second for the
// supervisor to read it. It first finishes the snapshot before it, so that
// the last one is not dropped for want of the encoder.
func (w *worker) finalReport() {
	deadline := time.Now().Add(time.Second)
	w.rep.finish(w.db, &w.d.c, deadline)
	w.tick(time.Now())
	w.rep.finish(w.db, &w.d.c, deadline)
	w.rep.stop()
}

func (w *worker) close() {
	w.rep.stop()
	w.b.sync()
	w.db.close()
	w.b.close()
	w.log.Info("worker stopped")
}

// fdWriter returns a function that makes one write(2) on fd.
func fdWriter(fd int) func([]byte) (int, error) {
	return func(p []byte) (int, error) {
		for {
			n, err := unix.Write(fd, p)
			if !errors.Is(err, unix.EINTR) {
				return n, err
			}
		}
	}
}

// The worker is the rule database's sockets: the supervisor opens them
// (relaysock) with the prefilter attached, the worker replaces the filter
// when the rules change, closes them and tells the backend.

func (w *worker) openInput(in *input, matches []inputMatch) error {
	prog, err := inputFilter(in, matches)
	if err != nil {
		return err
	}
	// The supervisor attaches the prefilter, the one attach of the
	// socket; a socket the kernel would not give it comes with an error
	// wrapping ErrUnfiltered, which is the result of a successful open.
	fd, ring, unfiltered := w.openIngress(in, prog)
	if fd < 0 {
		return unfiltered
	}
	if in.link, err = linkHeaderLen(fd, in.ifindex); err != nil {
		w.closeRing(ring)
		unix.Close(fd)
		return err
	}
	in.fd, in.ring = fd, ring
	if err := w.b.addInput(in); err != nil {
		w.closeRing(ring)
		unix.Close(fd)
		in.fd, in.ring = -1, nil
		return err
	}
	return unfiltered
}

// openIngress opens in's socket and, when it has a receive ring, maps
// the ring. The socket is the supervisor's member of the input's fanout
// group for this worker's slot (a duplicate): the ring may come with
// blocks an earlier worker of the slot left, which are relayed first
// (adopt), and the ring may differ from the configured one, as the first
// request of any worker of the slot decided. A ring the kernel cannot
// give (no memory for it) leaves the input receiving packet by packet,
// which is logged. A socket without its prefilter is opened all the same
// (fd ≥ 0), and the error wrapping prefilter.ErrUnfiltered returned with
// it; any other error leaves no socket (fd -1).
func (w *worker) openIngress(in *input, prog []bpf.RawInstruction) (int, *rxRing, error) {
	g := w.cfg.ring()
	fd, unfiltered := w.sock.OpenIngress(in.ifindex, in.fanoutID, prog, g)
	noRing := "the input's sockets were opened without one" // why, if so
	if fd < 0 {
		if g == nil {
			return -1, nil, unfiltered
		}
		noRing = unfiltered.Error()
		if fd, unfiltered = w.sock.OpenIngress(in.ifindex, in.fanoutID, prog, nil); fd < 0 {
			return -1, nil, unfiltered
		}
	}
	ring, frames, ino, err := ringOf(fd)
	switch {
	case err != nil:
		unix.Close(fd)
		return -1, nil, fmt.Errorf("open input on ifindex %d: %w", in.ifindex, err)
	case !ring && g != nil:
		w.log.Warn("input without receive ring", "ifindex", in.ifindex, "err", noRing)
		return fd, nil, unfiltered
	case !ring:
		return fd, nil, unfiltered
	case g == nil:
		unix.Close(fd)
		return -1, nil, fmt.Errorf("open input on ifindex %d: its socket has a receive ring, and this worker runs without", in.ifindex)
	case frames != (g.FrameSize > 0):
		unix.Close(fd)
		return -1, nil, fmt.Errorf("open input on ifindex %d: its socket has a receive ring of another kind (frames: %v) than this worker's", in.ifindex, frames)
	}
	if r := w.rings.lookupRing(ino); r != nil {
		// This worker closed the socket while sends still pointed into
		// its ring: the mapping and its state carry on.
		r.closed = false
		return fd, r, unfiltered
	}
	r, err := mapRing(fd, g)
	if err == nil && !r.frames {
		err = r.checkPriv()
		if err != nil {
			unmapRing(r)
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	r.ino = ino
	if a := r.adopt(); a != (adopted{}) {
		w.d.c.RestartUnconfirmed += uint64(a.Unconfirmed)
		w.log.Info("receive ring taken over", "ifindex", in.ifindex, "backlog_blocks", a.Backlog,
			"resumed_blocks", a.Resumed, "skipped_packets", a.Skipped, "returned_blocks", a.Returned,
			"unconfirmed_packets", a.Unconfirmed)
	}
	w.rings.add(r)
	return fd, r, unfiltered
}

// closeRing gives up ring r once its socket is closed; it is unmapped when
// no send points into it any more (releaseBlock).
func (w *worker) closeRing(r *rxRing) {
	if r != nil && w.rings.close(r) {
		unmapRing(r)
	}
}

// holdBlock counts one more send pointing into the ring block, or copy
// buffer, id names.
func (w *worker) holdBlock(id uint32) {
	if isCopy(id) {
		w.copies.hold(id)
		return
	}
	w.rings.hold(id)
}

// releaseBlock drops one hold on the ring block, or copy buffer, id names.
func (w *worker) releaseBlock(id uint32) {
	if isCopy(id) {
		w.copies.release(id)
		return
	}
	if r := w.rings.release(id); r != nil {
		unmapRing(r)
	}
}

// forwardBlock forwards the packets of block blk of in's ring (a frame of
// a frame ring) that are not handled yet, counting each as handled
// (rxRing.done, for the next owner of the ring) as forward starts on it: a
// send that forward's queue flushes is published as handled, so a packet
// is relayed at most once across owners. The block must be held while its
// sends are in flight; a packet read into a copy buffer is held until the
// backend calls w.copies.endBatch.
func (w *worker) forwardBlock(in *input, blk int, s sender) {
	r := in.ring
	id := int(bufID(r, blk))
	it := &w.iter
	if r.frames {
		it.startFrame(r.block(blk))
	} else {
		it.start(r.block(blk))
	}
	if !it.skip(int(r.done[blk])) {
		return // an earlier owner counted the bad headers
	}
	r.cur = blk
	for {
		pkt, n, ok, bad := it.next()
		if !ok {
			if bad {
				w.d.c.Malformed++
			}
			break
		}
		r.done[blk]++
		if it.frame && it.copied {
			w.forwardCopy(in, it.meta, s)
			continue
		}
		w.d.forward(int32(in.ifindex), in.link, pkt, n, id, it.meta, s)
	}
	r.cur = -1
}

// forwardCopy reads the packet a frame marked TP_STATUS_COPY stands for
// from in's receive queue, where the kernel queued it whole, and forwards
// it from a copy buffer. The queue holds such packets only, in the order
// of their frames. When every copy buffer is held by sends in flight the
// packet is read and dropped, counted as buffer_exhausted. A worker killed
// between reading such a packet and publishing its frame handled leaves the
// next owner of the ring one copy short: it reads the copy of the next
// marked frame for this one (both are relayed, the earlier lost).
func (w *worker) forwardCopy(in *input, meta rxMeta, s sender) {
	if w.copies.pool.mem == nil && !w.copies.mapFailed {
		mem, err := mapPool(copySlots)
		if err != nil {
			// Not again before the next socket retry (tick): not an
			// mmap and a log line per packet.
			w.copies.mapFailed = true
			w.log.Warn("cannot map copy buffers", "err", err)
		} else {
			w.copies.pool.mem = mem
			for i := range copySlots {
				w.copies.free = append(w.copies.free, i)
			}
		}
	}
	slot := w.copies.get()
	if slot < 0 && w.copies.pool.mem != nil {
		w.b.reclaim()
		slot = w.copies.get()
	}
	buf := w.discard[:] // MSG_TRUNC dequeues the packet all the same
	if slot >= 0 {
		buf = w.copies.pool.slot(slot)
	}
	n, err := recvTrunc(in.fd, buf)
	switch {
	case err != nil:
		// The copy is not there (the socket was closed and opened
		// again): nothing to count but the frame.
		w.d.c.RxPackets++
		w.d.c.Malformed++
	case slot < 0:
		w.d.c.RxPackets++
		w.d.c.BufferExhausted++
	default:
		w.d.forward(int32(in.ifindex), in.link, buf, n, int(copyID(slot)), meta, s)
	}
}

func (w *worker) filterInput(in *input, matches []inputMatch) error {
	prog, err := inputFilter(in, matches)
	if err != nil {
		return err
	}
	if err := prefilter.Attach(in.fd, prefilter.ForInput(prog, in.ring != nil)); err != nil {
		return fmt.Errorf("replace filter on ifindex %d: %w", in.ifindex, err)
	}
	return nil
}

func (w *worker) closeInput(in *input) {
	w.b.removeInput(in)
	w.countDrops(in)
	unix.Close(in.fd)
	in.fd = -1
	w.closeRing(in.ring)
	in.ring = nil
}

// countDrops adds what the kernel dropped on in's socket since the last
// call to kernel_drops, and warns when its ring froze: every block was
// still the worker's, so packets were dropped until one came back.
func (w *worker) countDrops(in *input) {
	if in.ring == nil {
		// An error (the socket is gone) counts nothing.
		drops, _ := relaysock.PacketDrops(in.fd)
		w.d.c.KernelDrops += drops
		if drops > 0 && w.db.traceIns != nil {
			w.d.traceInput(int32(in.ifindex), tracing.RingFull, uint64(drops), 0)
		}
		return
	}
	drops, freezes := ringStats(in.fd, in.ring.frames)
	w.d.c.KernelDrops += drops
	w.d.c.RingFull += freezes
	if drops > 0 && w.db.traceIns != nil {
		w.d.traceInput(int32(in.ifindex), tracing.RingFull, uint64(drops), 0)
	}
	if freezes > 0 {
		w.log.Warn("receive ring full: packets dropped", "ifindex", in.ifindex, "freezes", freezes, "dropped", drops,
			"ring_size", len(in.ring.refs))
	}
}

// ringUsage returns how many frames (blocks) of the inputs' rings are the
// worker's now, and how many they have.
func (w *worker) ringUsage() stats.RingUsage {
	var u stats.RingUsage
	for _, in := range w.db.inputs {
		if in.fd >= 0 && in.ring != nil {
			u.Used += uint64(in.ring.used())
			u.Size += uint64(len(in.ring.refs))
		}
	}
	return u
}

// openEgress gets the socket of e's identity from the supervisor, the same
// one every worker has, and reads its source port and its interface's MTU.
func (w *worker) openEgress(e *egress) error {
	fd, err := w.sock.OpenEgress(e.key)
	if err != nil {
		e.fd = -1
		return err
	}
	e.fd, e.port, e.mtu = fd, 0, 0
	if !e.key.Raw { // a raw socket has no port: its datagrams carry the input's
		e.port = uint16(relaysock.BoundPort(fd))
		if e.mtu, err = interfaceMTU(fd, e.key.IfIndex); err != nil {
			w.log.Warn("no UDP GSO on output socket", "socket", e.key.String(), "err", err)
		}
	}
	return nil
}

func (w *worker) closeEgress(e *egress) {
	unix.Close(e.fd)
	e.fd = -1
}

// napFor sleeps for d on the calling thread, without the Go scheduler's
// timers, which would wake another thread to run the loop's goroutine.
func napFor(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil)
}
