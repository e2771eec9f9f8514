package worker

import (
	"errors"
	"log/slog"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// frameWriter writes whole frames to a non-blocking pipe. A frame the pipe
// takes only part of is finished by later calls before any new frame
// starts, so the reader never sees a torn frame.
type frameWriter struct {
	// write is one non-blocking write(2) on the pipe.
	write   func([]byte) (int, error)
	pending []byte // unwritten tail of the frame being written
	buf     []byte // the frame pending points into, reused
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
	frame, err := controlproto.AppendFrame(fw.buf[:0], v)
	if err != nil {
		return false, err
	}
	fw.buf = frame
	// A short write leaves the rest for flush, whatever error came with it.
	n, _ := fw.write(frame)
	if n <= 0 {
		return false, nil
	}
	fw.pending = frame[n:]
	return true, nil
}

// maxSnapshotBytes bounds the estimated encoded size of one snapshot's
// rules; rules beyond it wait for the next snapshot (they stay changed), so
// a snapshot never approaches the 16 MiB frame limit.
const maxSnapshotBytes = 4 << 20

// reporter builds the periodic stats snapshots and sends them on the stats
// pipe. Rules lists only rules whose counters or error changed since the
// last snapshot actually sent.
type reporter struct {
	worker, pid int
	backend     string
	seq         uint64
	fw          frameWriter
	log         *slog.Logger
	changed     []*rule
	errs        []string
}

// report sends one snapshot of db and the worker counters c, and counts it
// in c.StatsDropped when the pipe cannot take it. It also logs the outputs
// that started or stopped failing since the last report.
func (rp *reporter) report(now time.Time, db *ruleDB, c *stats.WorkerCounters, ring stats.RingUsage) {
	rp.seq++
	snap := stats.Snapshot{
		Worker:      rp.worker,
		PID:         rp.pid,
		Seq:         rp.seq,
		UnixNano:    now.UnixNano(),
		RulesetHash: db.Hash(),
		Backend:     rp.backend,
		Counters:    *c,
		Ring:        ring,
	}
	rp.changed, rp.errs = rp.changed[:0], rp.errs[:0]
	budget := maxSnapshotBytes
	for _, r := range db.byID {
		rp.logTransitions(r)
		errText := db.errorOf(r)
		if budget <= 0 || !r.changedSince(errText) {
			continue
		}
		budget -= 128 + len(r.wr.ID) + len(errText) + 64*len(r.outputs)
		rp.changed = append(rp.changed, r)
		rp.errs = append(rp.errs, errText)
		snap.Rules = append(snap.Rules, r.counters(errText))
	}
	if db.traces != nil {
		snap.Trace = db.traceEvents(nil, rp.worker)
	}
	ok, err := rp.fw.send(&snap)
	if err != nil {
		rp.log.Error("cannot encode stats snapshot", "err", err)
	}
	if !ok {
		c.StatsDropped++
		return
	}
	db.commitTraces()
	for i, r := range rp.changed {
		r.markReported(rp.errs[i])
	}
	clear(rp.changed)
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
