package pool

import (
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// SetTraces makes ts the complete set of rules every worker traces. Running
// workers get it at once; a worker that starts, or gets a SyncRules, gets
// it right after the rules, so a trace survives worker restarts. It never
// blocks on a worker.
func (p *Pool) SetTraces(ts []controlproto.WorkerTrace) {
	frame, err := controlproto.AppendFrame(nil, controlproto.WorkerCommand{Type: controlproto.WTrace, Traces: ts})
	if err != nil {
		p.log.Error("traces not sent to workers", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.traceFrame = frame
	for _, s := range p.slots {
		if s.proc != nil {
			s.proc.queue.push([][]byte{frame})
		}
	}
}

// passTraces hands the trace events of w's snapshot, numbered with its
// slot, to Config.OnTrace.
func (p *Pool) passTraces(s *workerSlot, snap *stats.Snapshot) {
	if len(snap.Trace) == 0 || p.cfg.OnTrace == nil {
		return
	}
	for i := range snap.Trace {
		snap.Trace[i].Worker = s.id
	}
	p.cfg.OnTrace(snap.Trace)
}
