package worker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// frameWriter writes whole frames to a non-blocking pipe. A frame the pipe
// takes only part of is finished by later calls before any new frame
// starts, so the reader never sees a torn frame.
type frameWriter struct {
	// write is one non-blocking write(2) on the pipe.
	write   func([]byte) (int, error)
	pending []byte       // unwritten tail of the frame being written
	buf     bytes.Buffer // the frame pending points into, reused
	enc     *json.Encoder
}

// flush writes what is left of the pending frame and reports whether
// nothing is pending any more.
func (fw *frameWriter) flush() bool {
	for len(fw.pending) > 0 {
		n, err := fw.write(fw.pending)
		if n > 0 {
			fw.pending = fw.pending[n:]
		}
		if err != nil || n <= 0 {
			if !errors.Is(err, errAgain) && err != nil {
				// The reader is gone (EPIPE) or the fd is bad:
				// nothing will ever take the rest.
				fw.pending = nil
			}
			break
		}
	}
	return len(fw.pending) == 0
}

// busy reports whether a frame is only partly written.
func (fw *frameWriter) busy() bool { return len(fw.pending) > 0 }

// send writes v as one frame unless an earlier frame is still unfinished,
// and reports whether the frame was written or started (the rest goes out
// with flush). A frame that could not be started is dropped.
func (fw *frameWriter) send(v any) (bool, error) {
	if !fw.flush() {
		return false, nil
	}
	frame, err := fw.encode(v)
	if err != nil {
		return false, err
	}
	// A short write leaves the rest for flush, whatever error came with it.
	n, _ := fw.write(frame)
	if n <= 0 {
		return false, nil
	}
	fw.pending = frame[n:]
	return true, nil
}

// statsRetry is how soon a stats frame the pipe took only part of is
// continued.
const statsRetry = 5 * time.Millisecond

// encode returns v as one frame, as controlproto.AppendFrame makes it, in
// fw.buf: json.Marshal would allocate the whole body anew each time.
func (fw *frameWriter) encode(v any) ([]byte, error) {
	fw.buf.Reset()
	fw.buf.Write([]byte{0, 0, 0, 0}) // the length prefix, set below
	if fw.enc == nil {
		fw.enc = json.NewEncoder(&fw.buf)
	}
	if err := fw.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	frame := fw.buf.Bytes()
	frame = frame[:len(frame)-1] // the newline Encode ends with
	n := len(frame) - 4
	if n > controlproto.MaxFrameSize {
		return nil, fmt.Errorf("encode frame: %d bytes, limit %d: %w", n, controlproto.MaxFrameSize, controlproto.ErrFrameTooLarge)
	}
	binary.BigEndian.PutUint32(frame, uint32(n))
	return frame, nil
}

// maxSnapshotBytes bounds the estimated encoded size of one snapshot's
// rules; rules beyond it wait for the next snapshot (they stay changed), so
// a snapshot never approaches the 16 MiB frame limit.
const maxSnapshotBytes = 4 << 20

// reporter builds the periodic stats snapshots and sends them on the stats
// pipe. Rules lists only rules whose counters or error changed since the
// last snapshot actually sent.
//
// The event loop only copies plain values into a snapshot buffer, at most
// rulesPerStep rules per loop iteration (report, then step), so that even
// a large ruleset holds up packets for microseconds at a time; an encoder
// goroutine turns the buffer into JSON and writes it. The buffer comes
// back with the verdict (sent or not), which the loop applies at its next
// report, before it copies the next snapshot: one channel handoff each way
// per interval, nothing per packet. While the last snapshot is still being
// copied or written (the pipe took only part of its frame), a new one is
// dropped.
type reporter struct {
	worker, pid int
	backend     string
	seq         uint64
	// fw is the encoder goroutine's.
	fw  frameWriter
	log *slog.Logger
	// perStep is how many rules step copies at most; 0: rulesPerStep.
	// maxBytes is the budget of a snapshot's rules; 0: maxSnapshotBytes.
	perStep, maxBytes int

	buf snapshotBuf
	// copying: buf is being filled, from rule pos of the rule list of
	// generation gen, with budget bytes left; resume is where the next
	// snapshot starts, after the rules the budget left out (-1: anywhere).
	copying     bool
	pos, resume int
	done        int // rules gone through
	restarts    int // of the snapshot being copied, for rule changes
	gen         uint64
	budget      int
	hash        ruleset.SetHash // of hashText
	hashText    string
	inFlight    bool // the encoder holds buf
	started     bool
	jobs        chan *snapshotBuf // loop → encoder
	verdicts    chan *snapshotBuf // encoder → loop, with its verdict
	quit        chan struct{}     // closed by stop
	exited      chan struct{}     // closed when the encoder returns
}

// rulesPerStep is how many rules the loop copies into a snapshot between
// two batches of packets: some 20 µs of its time.
const rulesPerStep = 256

// snapshotBuf is one snapshot as the loop copied it. The loop owns it until
// it hands it to the encoder, which owns it until it hands it back. Its
// slices keep their capacity from snapshot to snapshot.
type snapshotBuf struct {
	snap stats.Snapshot // Rules entries reuse their Outputs
	// rules are the rules of snap.Rules, in order, whose counters are
	// marked reported when the snapshot was sent.
	rules []*rule
	// traces are the trace events taken from the tracers' rings and data
	// their payload bytes; the encoder turns them into snap.Trace.
	traces []traceCopy
	data   []byte
	// wantTraces and wantData are how many events, and payload bytes,
	// traces and data lacked the room for: the encoder grows them, so
	// that the loop never allocates for them.
	wantTraces, wantData int

	// The encoder's verdict: the frame was written or started, or
	// could not be encoded.
	sent bool
	err  error
}

// report starts one snapshot of db, the worker counters c and ring, and
// copies its first rules (step); when the last one is still being copied
// or written, the snapshot is dropped and counted in c.StatsDropped, and
// so is one the pipe could not take (counted at the next report). It also
// applies the verdict on the last snapshot (collect).
func (rp *reporter) report(now time.Time, db *ruleDB, c *stats.WorkerCounters, ring stats.RingUsage) {
	rp.start()
	rp.collect(db, c, nil)
	rp.seq++
	if rp.inFlight || rp.copying {
		c.StatsDropped++
		return
	}
	b := &rp.buf
	b.snap = stats.Snapshot{
		Worker:   rp.worker,
		PID:      rp.pid,
		Seq:      rp.seq,
		UnixNano: now.UnixNano(),
		Backend:  rp.backend,
		Counters: *c,
		Ring:     ring,
		Rules:    b.snap.Rules[:0],
		Trace:    b.snap.Trace[:0],
	}
	rp.copying, rp.restarts = true, 0
	rp.restart(db)
	rp.step(db)
}

// restart starts copying db's rules into the snapshot from scratch.
func (rp *reporter) restart(db *ruleDB) {
	b := &rp.buf
	clear(b.rules)
	b.rules, b.snap.Rules = b.rules[:0], b.snap.Rules[:0]
	rules := db.ruleList()
	rp.gen, rp.done, rp.budget = db.listGen, 0, rp.maxBytes
	if rp.budget <= 0 {
		rp.budget = maxSnapshotBytes
	}
	if rp.pos = rp.resume; rp.pos < 0 || rp.pos >= len(rules) {
		rp.pos = 0
	}
	rp.resume = -1
}

// step copies the next rules of the snapshot being copied, and when it
// has them all, its trace events, and hands it to the encoder. It also
// logs the outputs of those rules that started or stopped failing. When
// the rules changed since the snapshot started, it starts them again; the
// second time in one snapshot it copies them all at once, so that steady
// rule changes cannot keep a snapshot (the heartbeat) from ever leaving.
func (rp *reporter) step(db *ruleDB) {
	if !rp.copying {
		return
	}
	rules := db.ruleList()
	b := &rp.buf
	n := rp.perStep
	if n <= 0 {
		n = rulesPerStep
	}
	if db.listGen != rp.gen {
		rp.restart(db)
		if rp.restarts++; rp.restarts > 1 {
			n = len(rules)
		}
	}
	for ; n > 0 && rp.done < len(rules); n-- {
		r := rules[rp.pos]
		rp.logTransitions(r)
		if rp.budget > 0 {
			errText := db.errorOf(r)
			if r.changedSince(errText) {
				rp.budget -= 128 + len(r.wr.ID) + len(errText) + 64*len(r.outputs)
				b.rules = append(b.rules, r)
				if len(b.snap.Rules) < cap(b.snap.Rules) {
					b.snap.Rules = b.snap.Rules[:len(b.snap.Rules)+1]
				} else {
					b.snap.Rules = append(b.snap.Rules, stats.RuleCounters{})
				}
				r.countersInto(&b.snap.Rules[len(b.snap.Rules)-1], errText)
			}
		}
		rp.done++
		if rp.pos++; rp.pos == len(rules) {
			rp.pos = 0
		}
		if rp.budget <= 0 && rp.resume < 0 {
			rp.resume = rp.pos // the next snapshot starts with the rules left out
		}
	}
	if rp.done < len(rules) {
		return
	}
	if rp.hashText == "" || db.hash != rp.hash {
		rp.hash, rp.hashText = db.hash, db.Hash() // formatted once per change
	}
	b.snap.RulesetHash = rp.hashText
	b.traces, b.data = b.traces[:0], b.data[:0]
	if db.traces != nil {
		b.traces, b.data, b.wantTraces, b.wantData = db.copyTraces(b.traces, b.data)
	}
	rp.copying, rp.inFlight = false, true
	rp.jobs <- b
}

// complete copies the rest of the snapshot being copied at once.
func (rp *reporter) complete(db *ruleDB) {
	for rp.copying {
		rp.step(db)
	}
}

// finish completes the snapshot being copied, if any, and waits until
// until for the encoder to write it (flush): for the final snapshot, which
// finalReport takes between two calls.
func (rp *reporter) finish(db *ruleDB, c *stats.WorkerCounters, until time.Time) bool {
	rp.complete(db)
	return rp.flush(db, c, until)
}

// collect applies the verdict on the snapshot the encoder holds, if it
// handed it back: the rules it carried are marked reported and the trace
// events it took forgotten when it was sent; otherwise it counts as
// dropped. It returns false when the encoder still holds it. It waits for
// the verdict until deadline, or not at all when deadline is nil.
func (rp *reporter) collect(db *ruleDB, c *stats.WorkerCounters, deadline <-chan time.Time) bool {
	if !rp.inFlight {
		return true
	}
	var b *snapshotBuf
	if deadline == nil {
		select {
		case b = <-rp.verdicts:
		default:
			return false
		}
	} else {
		select {
		case b = <-rp.verdicts:
		case <-deadline:
			return false
		}
	}
	rp.inFlight = false
	if b.err != nil {
		rp.log.Error("cannot encode stats snapshot", "err", b.err)
	}
	if !b.sent {
		c.StatsDropped++
	} else {
		db.commitTraces()
		for i, r := range b.rules {
			r.markReported(&b.snap.Rules[i])
		}
	}
	clear(b.rules) // the rules may go
	return true
}

// flush waits until the encoder has written the last snapshot, or given
// it up, and applies the verdict (collect); it gives up at until and then
// reports false. It is for the final snapshot and tests: the loop never
// waits for the encoder otherwise.
func (rp *reporter) flush(db *ruleDB, c *stats.WorkerCounters, until time.Time) bool {
	if !rp.inFlight {
		return true
	}
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	return rp.collect(db, c, t.C)
}

// start starts the encoder goroutine, once.
func (rp *reporter) start() {
	if rp.started {
		return
	}
	rp.started = true
	rp.jobs, rp.verdicts = make(chan *snapshotBuf, 1), make(chan *snapshotBuf, 1)
	rp.quit, rp.exited = make(chan struct{}), make(chan struct{})
	go rp.encode()
}

// stop ends the encoder goroutine, abandoning what is left of a partly
// written frame, and waits for it to return.
func (rp *reporter) stop() {
	if !rp.started || rp.quit == nil {
		return
	}
	close(rp.quit)
	<-rp.exited
	rp.quit = nil
}

// encode is the encoder goroutine: it writes each snapshot it is handed
// (write) until stop.
func (rp *reporter) encode() {
	defer close(rp.exited)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case b := <-rp.jobs:
			if !rp.write(b, retry) {
				return
			}
		case <-rp.quit:
			return
		}
	}
}

// write encodes and writes snapshot b, finishing a frame the pipe took only
// part of every statsRetry, and then hands b back with its verdict, so
// that a frame is never torn. It reports false when stop came first.
func (rp *reporter) write(b *snapshotBuf, retry *time.Timer) bool {
	b.snap.Trace = b.events(b.snap.Trace, rp.worker)
	b.sent, b.err = rp.fw.send(&b.snap)
	clear(b.snap.Trace) // the events' data and strings may go
	if cap(b.traces) < b.wantTraces {
		b.traces = make([]traceCopy, 0, b.wantTraces+b.wantTraces/4)
	}
	if cap(b.data) < b.wantData {
		b.data = make([]byte, 0, b.wantData+b.wantData/4)
	}
	for !rp.fw.flush() {
		retry.Reset(statsRetry)
		select {
		case <-retry.C:
		case <-rp.quit:
			rp.verdicts <- b
			return false
		}
	}
	rp.verdicts <- b
	return true
}

// logTransitions logs, once per change, an output that started dropping
// datagrams (a failing send, or no socket to send on) or recovered.
func (rp *reporter) logTransitions(r *rule) {
	for i := range r.outputs {
		o := &r.outputs[i]
		newErrs := o.cnt.Errors > o.errsSeen
		newOK := o.cnt.PacketsOut > o.okSeen
		o.errsSeen, o.okSeen = o.cnt.Errors, o.cnt.PacketsOut
		switch {
		case newErrs && !o.failing:
			o.failing = true
			rp.log.Warn("output dropping packets", "rule", r.wr.ID, "output", o.dest,
				"errors", o.cnt.Errors, "err", o.dropReason())
		case o.failing && newOK && !newErrs:
			o.failing = false
			rp.log.Info("output recovered", "rule", r.wr.ID, "output", o.dest, "errors", o.cnt.Errors)
		}
	}
}

// dropReason says why o's latest datagram was dropped: the errno of its
// failed send or, when it had no socket to send on (lastErrno 0), that and
// why the socket is not open, as the rule's error says it.
func (o *output) dropReason() string {
	if o.lastErrno != 0 {
		return o.lastErrno.Error()
	}
	if err := o.failure(); err != nil {
		return "output socket not open: " + err.Error()
	}
	return "output socket not open" // then; it has opened since
}
