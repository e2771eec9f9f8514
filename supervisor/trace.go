package supervisor

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/jsontext"
	"github.com/mcrelay/mcr/tracing"
)

// maxTraceReply bounds the estimated encoded size of the events of one
// GetTrace reply; a reader gets the rest with the next call.
const maxTraceReply = 4 << 20

// traceSessions owns the packet traces operators enable: which rules the
// workers trace, the events they reported, and which control connections
// hold each trace. A trace ends when the last connection holding it
// disables it or closes, so a forgotten trace never stays on. It is safe
// for concurrent use.
type traceSessions struct {
	log *slog.Logger
	// setWorkers tells every worker the complete set of traced rules
	// (Pool.SetTraces); called under mu, so the sets arrive in order.
	setWorkers func([]controlproto.WorkerTrace)
	// exists reports whether the master has a rule with the id.
	exists func(id string) bool

	mu     sync.Mutex
	byRule map[string]*traceSession // guarded by mu
}

// traceSession is the trace of one rule: its settings, its holders and
// the latest events the workers reported, in a ring of cfg.Limit.
type traceSession struct {
	cfg     controlproto.WorkerTrace
	holders map[uint64]bool // control connections (Request.Conn)
	ring    []tracing.Event
	head, n int
	seq     uint64 // of the newest event
	lost    uint64
}

func newTraceSessions(log *slog.Logger, setWorkers func([]controlproto.WorkerTrace), exists func(string) bool) *traceSessions {
	return &traceSessions{log: log, setWorkers: setWorkers, exists: exists, byRule: map[string]*traceSession{}}
}

// handle answers EnableTrace, DisableTrace and GetTrace.
func (ts *traceSessions) handle(req controlproto.Request) controlproto.Response {
	if ts == nil {
		return controlproto.Fail(controlproto.CodeUnavailable, "tracing is not available")
	}
	if !ts.exists(req.ID) {
		return controlproto.Fail(controlproto.CodeNotFound, "no rule %s", jsontext.Quote(req.ID))
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch req.Command {
	case controlproto.CmdEnableTrace:
		res, perr := ts.enableLocked(req)
		if perr != nil {
			return controlproto.Response{Error: perr}
		}
		return controlproto.OK(res)
	case controlproto.CmdDisableTrace:
		return controlproto.OK(ts.disableLocked(req))
	}
	return controlproto.OK(ts.getLocked(req.ID, req.Since))
}

// enableLocked starts the trace of req.ID for connection req.Conn, or
// joins it: a trace already on grows to the larger limit and snaplen.
func (ts *traceSessions) enableLocked(req controlproto.Request) (controlproto.TraceResult, *controlproto.Error) {
	cfg := controlproto.WorkerTrace{ID: req.ID, Limit: req.Limit, Snaplen: req.Snaplen}
	if cfg.Limit == 0 {
		cfg.Limit = controlproto.DefaultTraceLimit
	}
	s := ts.byRule[req.ID]
	if s == nil && len(ts.byRule) >= controlproto.MaxTracedRules {
		return controlproto.TraceResult{}, controlproto.Errorf(controlproto.CodeUnavailable,
			"%d rules are traced already, the most at once; end one of their traces first", controlproto.MaxTracedRules)
	}
	if s != nil {
		cfg.Limit, cfg.Snaplen = max(cfg.Limit, s.cfg.Limit), max(cfg.Snaplen, s.cfg.Snaplen)
	}
	if cfg.Snaplen > 0 {
		cfg.Limit = max(1, min(cfg.Limit, controlproto.MaxTraceBytes/cfg.Snaplen))
	}
	if s == nil {
		s = &traceSession{holders: map[uint64]bool{}}
		ts.byRule[req.ID] = s
	}
	s.holders[req.Conn] = true
	if s.cfg != cfg {
		s.resize(cfg)
		ts.pushLocked()
		ts.log.Info("trace enabled", "rule", req.ID, "limit", cfg.Limit, "snaplen", cfg.Snaplen)
	}
	return s.result(), nil
}

// disableLocked releases req.Conn's hold on the trace of req.ID; a
// connection that holds none ends the trace for all. The trace's events
// go with it.
func (ts *traceSessions) disableLocked(req controlproto.Request) controlproto.TraceResult {
	s := ts.byRule[req.ID]
	if s == nil {
		return controlproto.TraceResult{ID: req.ID}
	}
	if s.holders[req.Conn] {
		delete(s.holders, req.Conn)
	} else {
		clear(s.holders)
	}
	if len(s.holders) > 0 {
		return s.result()
	}
	ts.endLocked(req.ID, "disabled")
	ts.pushLocked()
	return controlproto.TraceResult{ID: req.ID, Next: s.seq}
}

// connClosed ends the hold of control connection conn on every trace.
func (ts *traceSessions) connClosed(conn uint64) {
	if ts == nil {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	changed := false
	for id, s := range ts.byRule {
		if !s.holders[conn] {
			continue
		}
		delete(s.holders, conn)
		if len(s.holders) == 0 {
			ts.endLocked(id, "its connection closed")
			changed = true
		}
	}
	if changed {
		ts.pushLocked()
	}
}

func (ts *traceSessions) endLocked(id, why string) {
	delete(ts.byRule, id)
	ts.log.Info("trace disabled", "rule", id, "reason", why)
}

// pushLocked sends the workers the traced rules.
func (ts *traceSessions) pushLocked() {
	set := make([]controlproto.WorkerTrace, 0, len(ts.byRule))
	for _, s := range ts.byRule {
		set = append(set, s.cfg)
	}
	slices.SortFunc(set, func(a, b controlproto.WorkerTrace) int { return cmp.Compare(a.ID, b.ID) })
	ts.setWorkers(set)
}

// ingest takes the events of a worker's snapshot. Events of rules no
// longer traced (reported before the worker heard) are dropped.
func (ts *traceSessions) ingest(events []tracing.Event) {
	if ts == nil {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, e := range events {
		s := ts.byRule[e.Rule]
		if s == nil {
			continue
		}
		if e.Kind == tracing.Lost {
			s.lost += e.Count
			continue
		}
		if len(e.Data) > s.cfg.Snaplen {
			e.Data = e.Data[:s.cfg.Snaplen]
		}
		s.seq++
		e.Seq = s.seq
		i := (s.head + s.n) % len(s.ring)
		if s.n == len(s.ring) {
			s.head = (s.head + 1) % len(s.ring)
		} else {
			s.n++
		}
		s.ring[i] = e
	}
}

// getLocked returns the events of id's trace after since.
func (ts *traceSessions) getLocked(id string, since uint64) controlproto.TraceResult {
	s := ts.byRule[id]
	if s == nil {
		return controlproto.TraceResult{ID: id}
	}
	r := s.result()
	oldest := s.seq - uint64(s.n) + 1 // the seq of ring[head]
	if since+1 < oldest {
		r.Missed = oldest - 1 - since
		since = oldest - 1
	}
	budget := maxTraceReply
	for seq := since + 1; seq <= s.seq && budget > 0; seq++ {
		e := s.ring[(s.head+int(seq-oldest))%len(s.ring)]
		budget -= 256 + 2*len(e.Data)
		r.Events = append(r.Events, e)
		r.Next = seq
	}
	return r
}

// resize gives s the settings cfg, keeping the newest events that fit.
func (s *traceSession) resize(cfg controlproto.WorkerTrace) {
	ring := make([]tracing.Event, cfg.Limit)
	keep := min(s.n, cfg.Limit)
	for k := range keep {
		ring[k] = s.ring[(s.head+s.n-keep+k)%len(s.ring)]
	}
	s.cfg, s.ring, s.head, s.n = cfg, ring, 0, keep
}

// result is the TraceResult of s without events: Next is the newest.
func (s *traceSession) result() controlproto.TraceResult {
	return controlproto.TraceResult{ID: s.cfg.ID, Enabled: true, Limit: s.cfg.Limit, Snaplen: s.cfg.Snaplen,
		Next: s.seq, Lost: s.lost}
}

// has reports whether the master has a rule with id (trace commands).
func (m *master) has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rules[id] != nil
}
