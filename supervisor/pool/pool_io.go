package pool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

const (
	// drainTimeout bounds how long a dead worker's pipes are read after
	// its exit. Normally they end at once (the worker held the only write
	// ends); a leftover descendant holding them must not stall the slot.
	drainTimeout = time.Second
	// maxLogLine caps one worker log line; the rest of a longer line is
	// discarded. Workers write records shorter than PIPE_BUF (4 KiB).
	maxLogLine = 16 << 10
	// writeChunk is how many bytes of queued frames the command writer
	// gathers into one write.
	writeChunk = 256 << 10
)

// workerProc is one worker process: a life of a slot. The files are the
// supervisor's ends of the worker's socketpair and pipes; the worker's ends
// were closed in the supervisor right after the fork.
type workerProc struct {
	slot    int
	pid     int
	cmd     *exec.Cmd
	started time.Time
	log     *slog.Logger // with worker and pid

	commands *os.File // command socket, written by writeCommands only
	// sockets is the socket socketpair, served by serveSockets only.
	sockets *net.UnixConn
	statsR  *os.File // stats pipe, read by readStats only
	logR    *os.File // log pipe, read by readLogs only

	// Guarded by Pool.mu.
	queue        cmdQueue
	lastBeat     time.Time // latest snapshot, or start before the first
	runningSince time.Time // first snapshot; zero before
	killReason   string    // why the supervisor killed it; "" if it did not
}

// kill sends w SIGKILL, once, logging why. Pool.mu must be held.
func (w *workerProc) kill(reason string) {
	if w.killReason != "" {
		return
	}
	w.killReason = reason
	w.log.Warn("killing worker", "reason", reason)
	// Kill goes through the process's pidfd, so a worker already reaped
	// can never be confused with a new process that reused its pid.
	if err := w.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		w.log.Error("kill worker", "err", err)
	}
}

// closeCommands closes the command socket, which also ends a write blocked
// on a worker that stopped reading.
func (w *workerProc) closeCommands() {
	w.commands.Close()
}

// drainPipes waits for the readers and the writer of w to finish, then
// closes w's pipes. The readers read until EOF so that the worker's last
// snapshot and log lines are not lost; after drainTimeout they are cut off.
func (w *workerProc) drainPipes(pipes *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		pipes.Wait()
		close(done)
	}()
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		w.log.Warn("worker pipes still open after its exit, closing them")
		w.statsR.SetReadDeadline(time.Now())
		w.logR.SetReadDeadline(time.Now())
		<-done
	}
	w.statsR.Close()
	w.logR.Close()
}

// cmdQueue is a worker's queue of encoded command frames between the
// Pool's methods and the worker's command writer. It never blocks its
// producers: past its limit of frames or bytes it drops its frames and
// asks for a SyncRules instead, which the writer builds from the pool's
// ruleset when it gets to it. All fields are guarded by Pool.mu; wake
// (capacity 1) tells the writer there is something to take.
//
// Its life is a queueState, changed only by on, and what its snapshots
// tell (settled) a settleState.
type cmdQueue struct {
	limit  queueLimit
	frames [][]byte // while queueFrames
	bytes  int
	state  queueState
	settle settleState
	wake   chan struct{}
}

// queueState is where a worker's command queue is in its life. The zero
// value is invalid: a queue starts in queueIdle (newCmdQueue).
type queueState uint8

const (
	_ queueState = iota
	// queueIdle: nothing queued, and the writer is not writing.
	queueIdle
	// queueFrames: frames are queued.
	queueFrames
	// queueSync: a SyncRules is due; it supersedes frames.
	queueSync
	// queueWriting: the writer is writing what it took; nothing new
	// is queued.
	queueWriting
	// queueShutdown: Shutdown is due, and nothing else is taken.
	queueShutdown
	// queueClosed: the life is over; the writer exits.
	queueClosed
)

func (s queueState) String() string {
	switch s {
	case queueIdle:
		return "idle"
	case queueFrames:
		return "frames"
	case queueSync:
		return "sync"
	case queueWriting:
		return "writing"
	case queueShutdown:
		return "shutdown"
	case queueClosed:
		return "closed"
	}
	return fmt.Sprintf("queueState(%d)", uint8(s))
}

// open reports whether the queue takes commands.
func (s queueState) open() bool { return s >= queueIdle && s <= queueWriting }

// queueEvent is what moves a queue from one state to the next.
type queueEvent uint8

const (
	_          queueEvent = iota
	evFrames              // frames were queued (push)
	evSync                // a SyncRules is due (requestSync, or push overflowed)
	evShutdown            // Shutdown is due, whatever was queued
	evClose               // the life is over
	evTake                // the writer took what was due
	evWritten             // the writer finished writing and asks for more
)

// next returns the state after e in s. Commands that arrive after
// Shutdown or the end of the life are dropped (the state stays); a
// SyncRules swallows frames queued after it (it is built from the ruleset
// when taken, so it includes them).
func (s queueState) next(e queueEvent) queueState {
	switch {
	case e == evClose || s == queueClosed:
		return queueClosed
	case s == queueShutdown:
		if e == evTake {
			return queueClosed // Shutdown is the last command
		}
		return queueShutdown
	case e == evShutdown:
		return queueShutdown
	case e == evSync:
		return queueSync
	case e == evFrames && s != queueSync:
		return queueFrames
	case e == evTake && (s == queueFrames || s == queueSync):
		return queueWriting
	case e == evWritten && s == queueWriting:
		return queueIdle
	}
	return s
}

// settleState is what a worker's queue knows at a snapshot of the worker
// about the commands in flight (settled). The zero value is invalid.
type settleState uint8

const (
	_ settleState = iota
	// settleBusy: at the last snapshot something was queued, being
	// written or unread by the worker, or something was queued since.
	settleBusy
	// settleQuiet: at the last snapshot the worker had read everything
	// written to it, nothing was queued, and nothing was queued since.
	settleQuiet
)

// newCmdQueue returns the empty queue of a new worker life.
func newCmdQueue(limit queueLimit) cmdQueue {
	return cmdQueue{limit: limit, state: queueIdle, settle: settleBusy, wake: make(chan struct{}, 1)}
}

// on moves q by e, the one place its state changes: it drops the frames
// a state does not keep, counts anything newly queued against settling,
// and wakes the writer on the producers' events.
func (q *cmdQueue) on(e queueEvent) {
	from := q.state
	q.state = from.next(e)
	if q.state != queueFrames {
		q.frames, q.bytes = nil, 0
	}
	if from.open() && (e == evFrames || e == evSync) {
		q.settle = settleBusy
	}
	if e != evTake && e != evWritten { // the writer's own events
		q.signal()
	}
}

// push queues frames, the encoded commands of one Update. It reports
// whether the queue overflowed into a SyncRules just now.
func (q *cmdQueue) push(frames [][]byte) (overflowed bool) {
	if !q.state.open() || len(frames) == 0 {
		return false
	}
	if q.state != queueSync {
		// Frames count only in queueFrames: on drops what other
		// states do not keep.
		q.frames = append(q.frames, frames...)
		for _, f := range frames {
			q.bytes += len(f)
		}
	}
	q.on(evFrames)
	if len(q.frames) > q.limit.frames || q.bytes > q.limit.bytes {
		q.on(evSync)
		return true
	}
	return false
}

// requestSync replaces whatever is queued by one SyncRules.
func (q *cmdQueue) requestSync() { q.on(evSync) }

// shutdown drops whatever is queued for one Shutdown.
func (q *cmdQueue) shutdown() { q.on(evShutdown) }

// close ends the writer.
func (q *cmdQueue) close() { q.on(evClose) }

// settled reports, at a snapshot of the worker, whether the worker had
// every command it was sent before its previous snapshot arrived, and was
// sent nothing since: then a wrong hash now cannot be an update in flight.
// drained tells whether the worker has read everything written to its
// command socket so far. settled is meant to be called once per snapshot.
func (q *cmdQueue) settled(drained bool) bool {
	was := q.settle == settleQuiet
	q.settle = settleBusy
	if drained && q.state == queueIdle {
		q.settle = settleQuiet
	}
	return was
}

func (q *cmdQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// commandBatch is what the writer takes from a queue at once: frames, or a
// snapshot of the ruleset to send as SyncRules, or Shutdown.
type commandBatch struct {
	frames  [][]byte
	sync    []controlproto.WorkerRule
	syncing bool
	trace   []byte // the WTrace frame that follows a SyncRules

	shutdown bool
}

// takeCommands waits for commands queued for w and takes them. It returns
// false when w's life is over.
func (p *Pool) takeCommands(w *workerProc) (commandBatch, bool) {
	for {
		p.mu.Lock()
		q := &w.queue
		q.on(evWritten)
		var b commandBatch
		switch q.state {
		case queueClosed:
			p.mu.Unlock()
			return b, false
		case queueShutdown:
			b.shutdown = true
		case queueSync:
			// Snapshot the ruleset and leave queueSync under the same
			// lock as Update changes the ruleset and queues: every
			// update is either in this snapshot or queued after it.
			b.sync, b.syncing = p.ruleSliceLocked(), true
			b.trace = p.traceFrame
		case queueFrames:
			b.frames = q.frames
		default:
			wake := q.wake
			p.mu.Unlock()
			<-wake
			continue
		}
		q.on(evTake)
		p.mu.Unlock()
		return b, true
	}
}

// writeCommands is the command writer of w, one goroutine per life: it
// takes what the pool queues for w and writes it to the command socket,
// until the life ends or a write fails (the worker died; its exit is
// handled by the slot runner). Only this goroutine blocks on a stalled
// worker.
func (p *Pool) writeCommands(w *workerProc) {
	w.log.Debug("command writer started")
	defer w.log.Debug("command writer stopped")
	var buf []byte
	for {
		b, ok := p.takeCommands(w)
		if !ok {
			return
		}
		frames, err := b.encode()
		if err != nil {
			w.log.Error("encode worker commands", "err", err)
			continue
		}
		if buf, err = writeFrames(w.commands, buf, frames); err != nil {
			w.log.Debug("write worker commands", "err", err)
			return
		}
		if b.shutdown {
			w.log.Info("sent Shutdown to worker")
			return
		}
		if b.syncing {
			w.log.Debug("sent SyncRules to worker", "rules", len(b.sync), "frames", len(frames))
		}
	}
}

// encode returns the frames of b.
func (b *commandBatch) encode() ([][]byte, error) {
	switch {
	case b.shutdown:
		frame, err := controlproto.AppendFrame(nil, controlproto.WorkerCommand{Type: controlproto.WShutdown})
		return [][]byte{frame}, err
	case b.syncing:
		cmds, err := controlproto.SyncCommands(b.sync, controlproto.MaxFrameSize)
		if err != nil {
			return nil, err
		}
		frames := make([][]byte, len(cmds))
		for i := range cmds {
			if frames[i], err = controlproto.AppendFrame(nil, cmds[i]); err != nil {
				return nil, fmt.Errorf("encode SyncRules part %d: %w", i, err)
			}
		}
		if b.trace != nil {
			frames = append(frames, b.trace)
		}
		return frames, nil
	}
	return b.frames, nil
}

// writeFrames writes frames to f, gathering small ones into writes of up to
// writeChunk bytes in buf, which it returns for reuse.
func writeFrames(f *os.File, buf []byte, frames [][]byte) ([]byte, error) {
	buf = buf[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := f.Write(buf)
		buf = buf[:0]
		return err
	}
	for _, frame := range frames {
		if len(buf)+len(frame) > writeChunk {
			if err := flush(); err != nil {
				return buf, err
			}
		}
		if len(frame) > writeChunk {
			if _, err := f.Write(frame); err != nil {
				return buf, err
			}
			continue
		}
		buf = append(buf, frame...)
	}
	return buf, flush()
}

// readStats is the stats reader of w, one goroutine per life: each frame
// is a stats.Snapshot, w's heartbeat. It stops at the end of the stream. A
// frame that is too large or does not decode means the stream can no longer
// be trusted to be framed where the worker meant: the worker is killed and
// restarted, which is logged once per life and rate-limited by the restart
// backoff.
func (p *Pool) readStats(s *workerSlot, w *workerProc) {
	w.log.Debug("stats reader started")
	defer w.log.Debug("stats reader stopped")
	fr := controlproto.NewFrameReader(w.statsR)
	for {
		body, err := fr.Next()
		if err != nil {
			if !streamEnded(err) {
				p.brokenStats(w, err)
			}
			return
		}
		var snap stats.Snapshot
		if err := json.Unmarshal(body, &snap); err != nil {
			p.brokenStats(w, fmt.Errorf("decode snapshot: %w", err))
			return
		}
		p.observe(s, w, &snap, time.Now())
	}
}

// streamEnded reports whether a read error means the worker is gone (also
// in the middle of a frame, when it was killed while writing) or the
// supervisor cut the pipe off, rather than a protocol error.
func streamEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}

// brokenStats handles a protocol error on w's stats pipe.
func (p *Pool) brokenStats(w *workerProc, err error) {
	w.log.Error("worker stats stream broken", "err", err)
	p.mu.Lock()
	w.kill("broken stats stream")
	p.mu.Unlock()
}

// readLogs is the log reader of w, one goroutine per life: it re-emits each
// line the worker (or, for a crash trace, the Go runtime on its stderr)
// writes, until the end of the stream.
func (p *Pool) readLogs(w *workerProc) {
	w.log.Debug("log reader started")
	defer w.log.Debug("log reader stopped")
	br := bufio.NewReaderSize(w.logR, maxLogLine)
	h := p.log.Handler()
	for {
		line, truncated, err := readLogLine(br)
		if len(line) > 0 {
			reemitLogLine(h, w.slot, line, truncated, time.Now())
		}
		if err != nil {
			return
		}
	}
}

// readLogLine returns the next line of br without its line ending, at most
// br.Size() bytes of it; truncated tells that the rest was discarded. The
// line is valid until the next read.
func readLogLine(br *bufio.Reader) (line []byte, truncated bool, err error) {
	line, err = br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		line = bytes.Clone(line)
		truncated = true
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
	}
	return bytes.TrimRight(line, "\r\n"), truncated, err
}
