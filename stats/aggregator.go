package stats

import (
	"slices"
	"sync"
	"time"
)

// RuleDesc is a rule of the report as the supervisor sees it, taken
// under one lock with the rest of its rules so that a report is one
// consistent view: its id, its state (the supervisor counts it in
// Totals.Rules) and its outputs, in the order of the rule's outputs.
type RuleDesc struct {
	ID      string
	State   string
	Outputs []OutputDesc
}

// OutputDesc is one output of a RuleDesc.
type OutputDesc struct {
	// Destination labels the output: "239.2.2.2:6000@eth1".
	Destination string
	// State is the output's state (the supervisor counts it in
	// Totals.Outputs); the report shows it (OutputReport.State) only for
	// an output that follows its receivers (WhenJoined), whose "idle"
	// explains why it sends nothing.
	State      string
	WhenJoined bool
}

// WorkerDesc names a worker slot of the report and the core it runs on.
type WorkerDesc struct {
	Worker, Core int
}

// Heartbeat is what the aggregator remembers of a worker slot's latest
// snapshot: enough for the supervisor's health check (At), its ruleset
// comparison (RulesetHash) and ListWorkers.
type Heartbeat struct {
	PID         int
	Seq         uint64
	At          time.Time // the supervisor's clock when the snapshot was observed
	RulesetHash string
	Backend     string
}

// Aggregator sums worker snapshots into the GetStats report. It is safe for
// concurrent use: one mutex guards all of its state, so the supervisor may
// call Observe from each worker's stats reader and Report from control
// connections at the same time.
//
// Counters. A snapshot's counters are cumulative over the worker process's
// life. A snapshot from a new process in a slot (another PID, or a Seq
// lower than the last) starts a new life: what the previous life counted
// stays in the slot's totals, so reported counters never go backwards. So
// does a rule counter that goes backwards within a life (the worker
// recreated the rule): the aggregator counts on from the lower value. A
// rule's counters are kept, even for ids the report does not list, until
// RemoveRule forgets them; a rule added again under that id starts from 0.
//
// Rates. pps and bps of a rule are, summed over workers, the counter delta
// between a worker's last two snapshots over the time between them (the
// snapshots' UnixNano). bps counts UDP payload bytes (bytes_in) times 8,
// without headers. A rule absent from a worker's last snapshot did not
// change there and contributes 0, so rates fall to 0 within two stats
// intervals after traffic stops; a worker whose last snapshot is older than
// two intervals (it is stuck or gone) contributes 0 too.
type Aggregator struct {
	interval time.Duration
	clock    func() time.Time // when RemoveRule happens; time.Now but in tests

	mu    sync.Mutex
	slots map[int]*slot // guarded by mu
	// removed holds, for a while after RemoveRule, when each id was
	// removed: snapshots taken before then still carry its old counters,
	// which must not bring them back. Guarded by mu.
	removed map[string]time.Time
}

// slot is one worker slot across the lives of its processes.
type slot struct {
	hb       Heartbeat
	seen     bool  // hb is valid
	lastNano int64 // UnixNano of the life's previous snapshot; 0 before the second
	// obs counts the snapshots accepted; a rate computed at obs is the
	// slot's current one.
	obs      uint64
	base     WorkerCounters // earlier lives
	counters WorkerCounters // this life, as last reported
	ring     RingUsage      // as last reported
	rules    map[string]*ruleState
}

// ruleState is one rule's counters in one slot.
type ruleState struct {
	total   ruleCounts // over all lives: what the report shows
	last    ruleCounts // the worker's cumulative values in this life
	err     string
	outErrs []string // RuleCounters.OutputErrors as last reported
	pps     float64
	bps     float64
	rateObs uint64 // slot.obs when pps and bps were computed
}

type ruleCounts struct {
	packets, bytes uint64
	outputs        []OutputCounters
}

// NewAggregator returns an aggregator for workers that send a snapshot
// every interval.
func NewAggregator(interval time.Duration) *Aggregator {
	return &Aggregator{
		interval: interval,
		clock:    time.Now,
		slots:    make(map[int]*slot),
		removed:  make(map[string]time.Time),
	}
}

// Observe adds one snapshot received at now. It does not keep s. A repeated
// snapshot (same PID and Seq) is ignored.
func (a *Aggregator) Observe(s *Snapshot, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forgetTombstones(now)
	sl := a.slotLocked(s.Worker)
	switch {
	case sl.seen && s.PID == sl.hb.PID && s.Seq == sl.hb.Seq:
		return
	case sl.seen && (s.PID != sl.hb.PID || s.Seq < sl.hb.Seq):
		sl.newLife()
	}
	var dt float64 // seconds since the life's previous snapshot; 0 if none
	if sl.lastNano != 0 && s.UnixNano > sl.lastNano {
		dt = float64(s.UnixNano-sl.lastNano) / 1e9
	}
	sl.obs++
	sl.seen = true
	sl.lastNano = s.UnixNano
	sl.hb = Heartbeat{PID: s.PID, Seq: s.Seq, At: now, RulesetHash: s.RulesetHash, Backend: s.Backend}
	if s.Counters.below(sl.counters) {
		sl.base.add(sl.counters)
	}
	sl.counters = s.Counters
	sl.ring = s.Ring
	for i := range s.Rules {
		rc := &s.Rules[i]
		if at, ok := a.removed[rc.ID]; ok && s.UnixNano < at.UnixNano() {
			continue // counted before the rule was removed
		}
		st := sl.rules[rc.ID]
		if st == nil {
			st = &ruleState{}
			sl.rules[rc.ID] = st
		}
		st.observe(rc, dt, sl.obs)
	}
}

// AddKernelDrops counts n packets the kernel dropped for worker slot w
// that no worker of the slot will report: the supervisor read them from
// the slot's input sockets itself, when a worker died or an input closed
// (reading the kernel's counter resets it, so each drop is counted by
// exactly one reader). They count in the slot's kernel_drops from now on.
func (a *Aggregator) AddKernelDrops(w int, n uint64) {
	if n == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.slotLocked(w).base.KernelDrops += n
}

// slotLocked returns worker slot w, made on first use; a.mu is held.
func (a *Aggregator) slotLocked(w int) *slot {
	sl := a.slots[w]
	if sl == nil {
		sl = &slot{rules: make(map[string]*ruleState)}
		a.slots[w] = sl
	}
	return sl
}

// newLife folds the slot's current life into its base: the next snapshot
// comes from a new process whose counters start at zero.
func (sl *slot) newLife() {
	sl.base.add(sl.counters)
	sl.counters = WorkerCounters{}
	sl.ring = RingUsage{}
	sl.lastNano = 0
	for _, st := range sl.rules {
		st.last = ruleCounts{}
		st.err, st.outErrs = "", nil
	}
}

// observe takes a rule's cumulative counters rc from a snapshot dt seconds
// after the previous one (0: no previous one in this life).
func (st *ruleState) observe(rc *RuleCounters, dt float64, obs uint64) {
	cur := ruleCounts{packets: rc.PacketsIn, bytes: rc.BytesIn, outputs: rc.Outputs}
	if cur.below(&st.last) {
		st.last = ruleCounts{} // the worker recreated the rule: count from 0
		dt = 0
	}
	dPackets, dBytes := cur.packets-st.last.packets, cur.bytes-st.last.bytes
	st.total.packets += dPackets
	st.total.bytes += dBytes
	st.total.outputs = growOutputs(st.total.outputs, len(cur.outputs))
	for i, o := range cur.outputs {
		var prev OutputCounters
		if i < len(st.last.outputs) {
			prev = st.last.outputs[i]
		}
		t := &st.total.outputs[i]
		t.PacketsOut += o.PacketsOut - prev.PacketsOut
		t.BytesOut += o.BytesOut - prev.BytesOut
		t.Errors += o.Errors - prev.Errors
		t.NotSentIdle += o.NotSentIdle - prev.NotSentIdle
	}
	st.last.packets, st.last.bytes = cur.packets, cur.bytes
	st.last.outputs = append(st.last.outputs[:0], cur.outputs...)
	st.err, st.outErrs = rc.Error, rc.OutputErrors
	st.pps, st.bps, st.rateObs = 0, 0, obs
	if dt > 0 {
		st.pps = float64(dPackets) / dt
		st.bps = 8 * float64(dBytes) / dt
	}
}

// below reports whether any counter of c is lower than in prev, which
// cumulative counters of one series never are.
func (c *ruleCounts) below(prev *ruleCounts) bool {
	if c.packets < prev.packets || c.bytes < prev.bytes || len(c.outputs) < len(prev.outputs) {
		return true
	}
	for i, p := range prev.outputs {
		o := c.outputs[i]
		if o.PacketsOut < p.PacketsOut || o.BytesOut < p.BytesOut || o.Errors < p.Errors || o.NotSentIdle < p.NotSentIdle {
			return true
		}
	}
	return false
}

func growOutputs(s []OutputCounters, n int) []OutputCounters {
	if len(s) < n {
		s = append(s, make([]OutputCounters, n-len(s))...)
	}
	return s
}

// RemoveRule forgets the counters of rule id in every slot. Call it when
// the rule is removed, so that a rule added later with the same id starts
// from 0. Snapshots taken before the call no longer count for id.
func (a *Aggregator) RemoveRule(id string) {
	now := a.clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sl := range a.slots {
		delete(sl.rules, id)
	}
	a.removed[id] = now
}

// tombstoneAge is how long, in stats intervals, RemoveRule's record of an
// id outlives it: long enough for every snapshot taken before the removal
// to have been read from the workers' pipes.
const tombstoneAge = 4

// forgetTombstones drops removal records older than tombstoneAge intervals.
func (a *Aggregator) forgetTombstones(now time.Time) {
	for id, at := range a.removed {
		if now.Sub(at) > tombstoneAge*a.interval {
			delete(a.removed, id)
		}
	}
}

// LastSeen returns what the last snapshot of worker slot w said and when it
// arrived; ok is false before the slot's first snapshot.
func (a *Aggregator) LastSeen(w int) (hb Heartbeat, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sl := a.slots[w]
	if sl == nil || !sl.seen {
		return Heartbeat{}, false
	}
	return sl.hb, true
}

// Report returns the GetStats report at now: rules in the order given, each
// output labelled with its destination (and its state, when it follows its
// receivers), workers in the order given. Totals
// sum what the report lists: packets_in over its rules, packets_out over
// their outputs, kernel_drops over its workers. Rules and workers never
// observed report zeros.
func (a *Aggregator) Report(rules []RuleDesc, workers []WorkerDesc, now time.Time) Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	slots := a.orderedSlots()
	rep := Report{
		Rules:   make([]RuleReport, 0, len(rules)),
		Workers: make([]WorkerReport, 0, len(workers)),
	}
	for _, rd := range rules {
		rr := a.ruleReport(rd, slots, now)
		rep.Totals.PacketsIn += rr.PacketsIn
		for _, o := range rr.Outputs {
			rep.Totals.PacketsOut += o.PacketsOut
		}
		rep.Rules = append(rep.Rules, rr)
	}
	for _, wd := range workers {
		wr := WorkerReport{Worker: wd.Worker, Core: wd.Core}
		if sl := a.slots[wd.Worker]; sl != nil {
			wr.WorkerCounters = sl.base
			wr.WorkerCounters.add(sl.counters)
			wr.Ring = sl.ring
		}
		rep.Totals.KernelDrops += wr.KernelDrops
		rep.Workers = append(rep.Workers, wr)
	}
	return rep
}

// ruleReport sums one rule over slots (in worker order, so that the error
// shown is the lowest worker's and float sums are reproducible).
func (a *Aggregator) ruleReport(rd RuleDesc, slots []*slot, now time.Time) RuleReport {
	rr := RuleReport{ID: rd.ID, Outputs: make([]OutputReport, len(rd.Outputs))}
	for i, o := range rd.Outputs {
		rr.Outputs[i].Destination = o.Destination
		if o.WhenJoined {
			rr.Outputs[i].State = o.State
		}
	}
	var errs RuleErrors
	for _, sl := range slots {
		st := sl.rules[rd.ID]
		if st == nil {
			continue
		}
		rr.PacketsIn += st.total.packets
		rr.BytesIn += st.total.bytes
		for i := range min(len(rr.Outputs), len(st.total.outputs)) {
			t := &st.total.outputs[i]
			rr.Outputs[i].PacketsOut += t.PacketsOut
			rr.Outputs[i].BytesOut += t.BytesOut
			rr.Outputs[i].Errors += t.Errors
			rr.Outputs[i].NotSentIdle += t.NotSentIdle
		}
		if st.rateObs == sl.obs && now.Sub(sl.hb.At) <= 2*a.interval {
			rr.PPS += st.pps
			rr.BPS += st.bps
		}
		errs.merge(st)
	}
	rr.Error = errs.Error
	// Errors for another number of outputs belong to an earlier version
	// of the rule, which the workers have not replaced yet (ListRules
	// leaves them out too).
	if len(errs.Outputs) == len(rr.Outputs) {
		for i := range rr.Outputs {
			rr.Outputs[i].Error = errs.Outputs[i]
		}
	}
	return rr
}

// RuleErrors is what the workers report wrong with a rule, as Report shows
// it: the rule's error and each output's ("" for an output that sends;
// Outputs is nil when all do). Where workers differ, the lowest worker's
// error is shown.
type RuleErrors struct {
	Error   string
	Outputs []string
}

// merge adds the errors of one slot's rule state, taken in worker order.
func (re *RuleErrors) merge(st *ruleState) {
	if re.Error == "" {
		re.Error = st.err
	}
	for i, e := range st.outErrs {
		if e == "" {
			continue
		}
		if re.Outputs == nil {
			re.Outputs = make([]string, len(st.outErrs))
		}
		if i < len(re.Outputs) && re.Outputs[i] == "" {
			re.Outputs[i] = e
		}
	}
}

// Errors returns, by rule id, the errors of every rule a worker reports
// one for (ListRules shows them with the rules' states).
func (a *Aggregator) Errors() map[string]RuleErrors {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]RuleErrors{}
	for _, sl := range a.orderedSlots() {
		for id, st := range sl.rules {
			if st.err == "" {
				continue
			}
			re := out[id]
			re.merge(st)
			out[id] = re
		}
	}
	return out
}

// orderedSlots returns the slots sorted by worker number.
func (a *Aggregator) orderedSlots() []*slot {
	ids := make([]int, 0, len(a.slots))
	for w := range a.slots {
		ids = append(ids, w)
	}
	slices.Sort(ids)
	out := make([]*slot, len(ids))
	for i, w := range ids {
		out[i] = a.slots[w]
	}
	return out
}

// add adds d to c, field by field.
func (c *WorkerCounters) add(d WorkerCounters) {
	c.RxPackets += d.RxPackets
	c.NoMatch += d.NoMatch
	c.Malformed += d.Malformed
	c.Fragments += d.Fragments
	c.NotUDP += d.NotUDP
	c.VLANTagged += d.VLANTagged
	c.BadChecksum += d.BadChecksum
	c.KernelDrops += d.KernelDrops
	c.RingFull += d.RingFull
	c.BufferExhausted += d.BufferExhausted
	c.RestartUnconfirmed += d.RestartUnconfirmed
	c.EgressErrors += d.EgressErrors
	c.Loops += d.Loops
	c.TTLExpired += d.TTLExpired
	c.StatsDropped += d.StatsDropped
	c.LogsDropped += d.LogsDropped
	c.GSOSends += d.GSOSends
	c.GSODatagrams += d.GSODatagrams
	c.GSOFallbacks += d.GSOFallbacks
	c.SocketErrors += d.SocketErrors
	c.SocketResyncs += d.SocketResyncs
}

// below reports whether any counter of c is lower than in prev: the worker
// started them again within what looked like one life.
func (c WorkerCounters) below(prev WorkerCounters) bool {
	return c.RxPackets < prev.RxPackets || c.NoMatch < prev.NoMatch ||
		c.Malformed < prev.Malformed || c.Fragments < prev.Fragments ||
		c.NotUDP < prev.NotUDP || c.KernelDrops < prev.KernelDrops || c.RingFull < prev.RingFull ||
		c.VLANTagged < prev.VLANTagged || c.BadChecksum < prev.BadChecksum ||
		c.BufferExhausted < prev.BufferExhausted || c.RestartUnconfirmed < prev.RestartUnconfirmed ||
		c.EgressErrors < prev.EgressErrors ||
		c.Loops < prev.Loops || c.TTLExpired < prev.TTLExpired ||
		c.StatsDropped < prev.StatsDropped || c.LogsDropped < prev.LogsDropped ||
		c.GSOSends < prev.GSOSends || c.GSODatagrams < prev.GSODatagrams ||
		c.GSOFallbacks < prev.GSOFallbacks || c.SocketErrors < prev.SocketErrors ||
		c.SocketResyncs < prev.SocketResyncs
}
