package worker

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/prefilter"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// sockets is the kernel side of the rule database: the AF_PACKET and UDP
// sockets rules need, opened when the first rule needs one and closed when
// the last rule using it goes. The Linux worker implements it; tests fake
// it.
type sockets interface {
	// openInput opens the AF_PACKET socket of in (in.ifindex,
	// in.fanoutID) with a prefilter for matches, sets in.fd (and in.ring
	// when it has one) and starts receiving on it.
	openInput(in *input, matches []inputMatch) error
	// filterInput replaces the prefilter of the open input in.
	filterInput(in *input, matches []inputMatch) error
	// closeInput stops receiving on in, closes its socket and sets in.fd
	// to -1 and in.ring to nil.
	closeInput(in *input)
	// openEgress gets the socket of egress identity e.key, sets e.fd and
	// reads what the sends on it need: e.port, e.mtu.
	openEgress(e *egress) error
	// closeEgress closes e's socket and sets e.fd to -1.
	closeEgress(e *egress)
}

// inputMatch is one (destination, port) an input's prefilter lets through.
type inputMatch struct {
	Dst  netip.Addr
	Port uint16
}

// input is one AF_PACKET socket: all rules on one ifindex share it.
type input struct {
	ifindex  int
	fanoutID int     // the group the open socket joined
	want     int     // the fanout group the rules ask for
	fd       int     // -1 while closed
	link     int     // bytes of link-layer header before the IP header (linkHeaderLen)
	ring     *rxRing // the socket's receive ring; nil: packets come one by one
	err      error
	// unfiltered: the kernel would not take the prefilter (ErrUnfiltered),
	// so unwanted traffic reaches userspace; warned once.
	unfiltered bool
	rules      int  // rules on this ifindex
	dirty      bool // its rule set changed: re-attach the filter (or open, or close)
	// traced: a rule on it is traced, and its filter lets every packet
	// through so that the trace shows what no rule wants (trace.go).
	traced bool

	// Backend state of the io_uring backend: the socket's slot in its
	// table and generation (both go into the receive's user data, so a
	// completion from a closed socket is recognised), whether its
	// multishot receive (or, with a ring, poll) is armed, and when to
	// re-arm it after an error.
	slot    int
	gen     uint32
	armed   bool
	failing bool
	rearmAt time.Time
}

// ringBlocks returns the number of blocks of in's block ring, 0 without.
func (in *input) ringBlocks() int {
	if in.ring == nil || in.ring.frames {
		return 0
	}
	return len(in.ring.refs)
}

// ringFrames returns the number of frames of in's frame ring, 0 without.
func (in *input) ringFrames() int {
	if in.ring == nil || !in.ring.frames {
		return 0
	}
	return len(in.ring.refs)
}

// egressKey identifies an egress socket, an egress identity; outputs with
// equal keys share one, and every worker has the same one.
type egressKey = relaysock.EgressKey

// egress is one socket outputs send on: a UDP socket that is not
// connected (each send names its destination), or the raw socket of
// transparent outputs.
type egress struct {
	key  egressKey
	fd   int   // -1 while it could not be opened
	err  error // why fd is -1
	refs int   // dests using it
	// port is the source port the socket is bound to (0: raw), which
	// with the source addresses makes the identity datagrams that come
	// back carry (loopSet).
	port uint16
	// mtu is its interface's, read when it opens and with the socket
	// retries. gso bounds the UDP_SEGMENT sends on it, from mtu; zero: one
	// datagram per send, always on a raw socket. gsoOff: the kernel
	// refused a run for good.
	mtu    int
	gso    gsoLimits
	gsoOff bool
}

// destKey identifies a dest.
type destKey struct {
	eg  egressKey
	dst netip.AddrPort // unmapped
	ttl int            // the output's TTL or hop limit; 0: the default
}

// dest is one destination on one egress socket with one TTL or hop limit:
// outputs with equal keys, in any rules, share it, and the datagrams of
// one receive batch for it leave in order, in UDP_SEGMENT runs.
type dest struct {
	key   destKey
	eg    *egress
	name  sockName // the destination, as msg_name
	dstIP [16]byte // the destination address, IPv4-mapped, for headers
	refs  int      // outputs using it

	// The datagrams of the current receive batch queued for it, a list
	// through the backend's sendQueue.
	head, tail int32
	queued     int
}

// output is one output of one rule: where its sends go and its counters.
type output struct {
	dest string // ruleset.Output.Destination()
	d    *dest  // nil when the output cannot be resolved
	err  error  // why d is nil
	// transparent outputs keep the input's source (PreserveSource): the
	// worker writes the headers, with the input's TTL less one, at most
	// ttlCap when that is not 0.
	transparent bool
	ttlCap      uint8
	// idle: the output follows its receivers and none listens
	// (WorkerRule.OutputIdle); it keeps its socket and sends nothing.
	idle bool

	cnt      stats.OutputCounters
	reported stats.OutputCounters // as in the last snapshot sent
	// lastErrno is the errno of the latest failed send (0: no socket).
	lastErrno syscall.Errno
	// failing and the seen counters drive the failing/recovered log
	// transitions, once per change rather than per packet.
	failing          bool
	errsSeen, okSeen uint64
	// trace is its rule's tracer, nil when the rule is not traced; index
	// is the output's position in the rule, for its events.
	trace *tracer
	index int16
}

// open reports whether o has a socket to send on.
func (o *output) open() bool { return o.d != nil && o.d.eg.fd >= 0 }

// rule is one installed WorkerRule with its resources and counters.
type rule struct {
	wr      controlproto.WorkerRule
	canon   []byte // wr.Canonical(), as added to the ruleset hash
	key     ruleset.Key
	in      *input // nil when the input cannot be keyed
	keyErr  error
	dupOf   string // id of the rule that owns the same input, if any
	outputs []output
	// transparent: some output keeps the input's source, so the
	// dispatcher reads the input's headers for it.
	transparent bool
	// srcAddrs[i] are wr.OutputAddrs[i], parsed (loopSet).
	srcAddrs [][]netip.Addr

	packetsIn, bytesIn uint64
	// trace records r's packets while the supervisor traces r; nil (one
	// check per matched packet) otherwise.
	trace *tracer

	reported    ruleReport
	forceReport bool // its outputs changed: report it even if the counters did not

	// errText caches errorText as of socket-state generation errGen.
	errText string
	errGen  uint64
	// outErrs caches outputErrors as of error text outErrsFor, for
	// snapshots (countersInto).
	outErrs    []string
	outErrsFor string
}

// ruleReport is what the last snapshot sent said about a rule.
type ruleReport struct {
	packetsIn, bytesIn uint64
	err                string
}

// ruleDB holds the worker's ruleset and the sockets it needs, and builds the
// lookup table the hot path reads. Changes (add, remove, replaceAll) take
// effect on commit, which the loop calls between receive batches. It is
// owned by the event loop goroutine.
type ruleDB struct {
	sk   sockets
	log  *slog.Logger
	byID map[string]*rule
	// list holds the rules of byID, for the stats snapshot to go through
	// them a step at a time; rebuilt (ruleList) when listDirty, which
	// bumps listGen.
	list      []*rule
	listDirty bool
	listGen   uint64
	inputs    map[int]*input
	egress    map[egressKey]*egress
	dests     map[destKey]*dest
	hash      ruleset.SetHash

	// table maps packet keys to indexes of byIndex; both are replaced,
	// never modified, by commit, and so is loops.
	table   *ruleset.Table
	byIndex []*rule
	dirty   bool // the table must be rebuilt
	// loops holds the egress identities of the outputs, which datagrams
	// coming back to an input carry; loopsDirty: an identity changed.
	loops      *loopSet
	loopsDirty bool

	// gen counts changes of socket state, which rule errors depend on.
	gen uint64
	// gsoSegs is how many datagrams one UDP_SEGMENT send may carry
	// (probeUDPSegments); 0: no UDP GSO on this kernel.
	gsoSegs int

	// traces are the tracers of the traced rules by id (nil: none), kept
	// across rule changes; traceIns lists the inputs of the traced rules
	// in the table, nil when none is traced (trace.go).
	traces   map[string]*tracer
	traceIns []traceIn
	// tracedInputs: some input is marked traced.
	tracedInputs bool
}

func newRuleDB(sk sockets, log *slog.Logger) *ruleDB {
	return &ruleDB{
		sk:     sk,
		log:    log,
		byID:   make(map[string]*rule),
		inputs: make(map[int]*input),
		egress: make(map[egressKey]*egress),
		dests:  make(map[destKey]*dest),
		loops:  &loopSet{},
		gen:    1,
	}
}

// Hash is the ruleset hash the worker reports: the SetHash of every rule's
// canonical encoding, equal to controlproto.HashWorkerRules of its rules.
func (db *ruleDB) Hash() string { return db.hash.String() }

// ruleList returns every rule, in an order that stays the same until the
// rules change, and then listGen changes too.
func (db *ruleDB) ruleList() []*rule {
	if db.listDirty {
		clear(db.list)
		db.list = db.list[:0]
		for _, r := range db.byID {
			db.list = append(db.list, r)
		}
		db.listDirty = false
		db.listGen++
	}
	return db.list
}

// Len is the number of rules.
func (db *ruleDB) Len() int { return len(db.byID) }

// add installs wr, replacing the rule with the same id. Re-adding an
// identical rule changes nothing.
func (db *ruleDB) add(wr controlproto.WorkerRule) {
	wr = withID(wr)
	canon := wr.Canonical()
	old := db.byID[wr.ID]
	if old != nil && bytes.Equal(old.canon, canon) {
		return
	}
	r := db.build(wr, canon)
	if old != nil {
		r.carry(old)
		db.drop(old)
	}
	db.byID[wr.ID] = r
	db.hash.Add(canon)
	db.dirty, db.listDirty = true, true
}

// remove uninstalls the rule with id and reports whether there was one.
func (db *ruleDB) remove(id string) bool {
	r := db.byID[id]
	if r == nil {
		return false
	}
	db.drop(r)
	delete(db.byID, id)
	db.dirty, db.listDirty = true, true
	return true
}

// replaceAll makes rules the complete ruleset. Rules that did not change
// keep their state; sockets still needed stay open. Of rules sharing an id
// the last one wins.
func (db *ruleDB) replaceAll(rules []controlproto.WorkerRule) {
	last := make(map[string]int, len(rules))
	for i := range rules {
		rules[i] = withID(rules[i])
		last[rules[i].ID] = i
	}
	next := make(map[string]*rule, len(last))
	var h ruleset.SetHash
	for i, wr := range rules {
		if last[wr.ID] != i {
			continue
		}
		canon := wr.Canonical()
		h.Add(canon)
		old := db.byID[wr.ID]
		if old != nil && bytes.Equal(old.canon, canon) {
			next[wr.ID] = old
			continue
		}
		r := db.build(wr, canon)
		if old != nil {
			r.carry(old)
		}
		next[wr.ID] = r
	}
	// Release the old rules only now, so that sockets the new ruleset
	// shares with the old one are never closed and reopened.
	for id, old := range db.byID {
		if next[id] != old {
			db.drop(old)
		}
	}
	db.byID, db.hash, db.dirty, db.listDirty = next, h, true, true
}

// withID fills in the default id of a rule that has none, as
// ruleset.Rule.Canonical does.
func withID(wr controlproto.WorkerRule) controlproto.WorkerRule {
	if wr.ID == "" {
		wr.ID = ruleset.DefaultID(wr.Input)
	}
	return wr
}

// build makes the state of a new rule and acquires its sockets.
func (db *ruleDB) build(wr controlproto.WorkerRule, canon []byte) *rule {
	r := &rule{wr: wr, canon: canon, outputs: make([]output, len(wr.Outputs))}
	r.key, r.keyErr = ruleset.KeyFor(wr.InputIfIndex, wr.Input)
	if r.keyErr == nil {
		r.in = db.acquireInput(wr.InputIfIndex, wr.FanoutID)
	}
	for i, o := range wr.Outputs {
		out := &r.outputs[i]
		out.dest = o.Destination()
		out.transparent, out.ttlCap = o.PreserveSource, uint8(o.TTL)
		out.idle = i < len(wr.OutputIdle) && wr.OutputIdle[i]
		r.transparent = r.transparent || o.PreserveSource
		var k destKey
		if k, out.err = destKeyFor(wr, i); out.err == nil {
			out.d = db.acquireDest(k)
		}
	}
	r.srcAddrs = make([][]netip.Addr, len(wr.OutputAddrs))
	for i, addrs := range wr.OutputAddrs {
		for _, s := range addrs {
			if a, err := netip.ParseAddr(s); err == nil {
				r.srcAddrs[i] = append(r.srcAddrs[i], a.Unmap())
			}
		}
	}
	db.loopsDirty = true
	db.attachTrace(r)
	return r
}

// destKeyFor resolves output i of wr to where its datagrams go.
func destKeyFor(wr controlproto.WorkerRule, i int) (destKey, error) {
	eg, err := relaysock.EgressKeyFor(wr, i)
	if err != nil {
		return destKey{}, err
	}
	o := wr.Outputs[i]
	dst := netip.MustParseAddr(o.Group).Unmap() // EgressKeyFor parsed it
	k := destKey{eg: eg, dst: netip.AddrPortFrom(dst, uint16(o.Port))}
	if !eg.Raw {
		k.ttl = o.TTL // a transparent output's is a cap, in its headers
	}
	return k, nil
}

// carry moves the counters of old, the rule this one replaces, into r, so
// that counters stay cumulative per rule id. An output keeps its counters
// when old had an output with the same destination.
func (r *rule) carry(old *rule) {
	r.packetsIn, r.bytesIn, r.reported = old.packetsIn, old.bytesIn, old.reported
	r.forceReport = true
	for i := range r.outputs {
		o := &r.outputs[i]
		for j := range old.outputs {
			if p := &old.outputs[j]; p.dest == o.dest {
				o.cnt, o.reported, o.errsSeen, o.okSeen = p.cnt, p.reported, p.errsSeen, p.okSeen
				break
			}
		}
	}
}

// drop releases the sockets of r and takes it out of the hash.
func (db *ruleDB) drop(r *rule) {
	db.hash.Remove(r.canon)
	if r.in != nil {
		r.in.rules--
		r.in.dirty = true
	}
	for i := range r.outputs {
		if d := r.outputs[i].d; d != nil {
			db.releaseDest(d)
		}
	}
	db.loopsDirty = true
}

func (db *ruleDB) acquireInput(ifindex, fanoutID int) *input {
	in := db.inputs[ifindex]
	if in == nil {
		in = &input{ifindex: ifindex, fd: -1, slot: -1}
		db.inputs[ifindex] = in
	}
	in.rules++
	in.want = fanoutID
	in.dirty = true
	return in
}

func (db *ruleDB) acquireDest(k destKey) *dest {
	if d := db.dests[k]; d != nil {
		d.refs++
		return d
	}
	d := &dest{key: k, eg: db.acquireEgress(k.eg), refs: 1, head: -1, tail: -1}
	if k.eg.Raw {
		// A raw IPv6 socket reads the port of msg_name as the protocol
		// (raw(7)); the port is in the worker's UDP header.
		d.name.set(netip.AddrPortFrom(k.dst.Addr(), 0), k.eg.IfIndex)
	} else {
		d.name.set(k.dst, k.eg.IfIndex)
	}
	d.dstIP = k.dst.Addr().As16()
	db.dests[k] = d
	return d
}

func (db *ruleDB) releaseDest(d *dest) {
	if d.refs--; d.refs > 0 {
		return
	}
	db.releaseEgress(d.eg)
	delete(db.dests, d.key)
}

func (db *ruleDB) acquireEgress(k egressKey) *egress {
	if e := db.egress[k]; e != nil {
		e.refs++
		return e
	}
	e := &egress{key: k, fd: -1, refs: 1}
	db.egress[k] = e
	db.openEgress(e)
	return e
}

func (db *ruleDB) openEgress(e *egress) {
	db.gen++
	err := db.sk.openEgress(e)
	if err != nil && (e.err == nil || e.err.Error() != err.Error()) {
		db.log.Warn("cannot open output socket", "socket", e.key.String(), "err", err)
	}
	if err == nil {
		attrs := []any{"socket", e.key.String()}
		if !e.key.Raw {
			attrs = append(attrs, "source_port", e.port, "mtu", e.mtu)
		}
		db.log.Info("output socket open", attrs...)
		db.loopsDirty = true
		e.gsoOff = false
		e.setGSO(db.gsoSegs)
	}
	e.err = err
}

func (db *ruleDB) releaseEgress(e *egress) {
	e.refs--
	if e.refs > 0 {
		return
	}
	if e.fd >= 0 {
		db.sk.closeEgress(e)
	}
	delete(db.egress, e.key)
}

// commit applies the changes since the last commit: opens, re-filters and
// closes input sockets and rebuilds the lookup table and the loop set.
func (db *ruleDB) commit() {
	if db.loopsDirty {
		db.loops = db.buildLoops()
		db.loopsDirty = false
	}
	if !db.dirty {
		return
	}
	db.syncInputs()
	db.rebuildTable()
	db.dirty = false
	db.gen++
}

// syncInputs brings every input whose rules changed in line with them.
func (db *ruleDB) syncInputs() {
	db.markTracedInputs()
	matches := map[*input][]inputMatch{}
	for _, in := range db.inputs {
		if in.dirty && in.rules > 0 {
			matches[in] = nil
		}
	}
	if len(matches) > 0 {
		seen := map[inputMatch]*input{}
		for _, r := range db.byID {
			if r.in == nil || !r.in.dirty {
				continue
			}
			m := inputMatch{Dst: netip.AddrFrom16(r.key.Dst).Unmap(), Port: r.key.Port}
			if seen[m] != r.in {
				seen[m] = r.in
				matches[r.in] = append(matches[r.in], m)
			}
		}
	}
	dirty := make([]*input, 0, len(db.inputs))
	for _, in := range db.inputs {
		if in.dirty {
			dirty = append(dirty, in)
		}
	}
	slices.SortFunc(dirty, func(a, b *input) int { return cmp.Compare(a.ifindex, b.ifindex) })
	for _, in := range dirty {
		in.dirty = false
		if in.rules == 0 {
			if in.fd >= 0 {
				db.sk.closeInput(in)
				db.log.Info("input closed", "ifindex", in.ifindex)
			}
			delete(db.inputs, in.ifindex)
			continue
		}
		m := matches[in]
		slices.SortFunc(m, func(a, b inputMatch) int {
			return cmp.Or(a.Dst.Compare(b.Dst), cmp.Compare(a.Port, b.Port))
		})
		db.syncInput(in, m)
	}
}

// syncInput opens in (or reopens it in another fanout group) or re-attaches
// its filter, logging changes of its error state.
func (db *ruleDB) syncInput(in *input, m []inputMatch) {
	if in.fd >= 0 && in.fanoutID != in.want {
		db.sk.closeInput(in)
	}
	var err error
	if in.fd < 0 {
		in.fanoutID = in.want
		if err = db.sk.openInput(in, m); err == nil || errors.Is(err, prefilter.ErrUnfiltered) {
			db.log.Info("input open", "ifindex", in.ifindex, "fanout_id", in.fanoutID, "matches", len(m),
				"ring_frames", in.ringFrames(), "ring_blocks", in.ringBlocks())
		}
	} else {
		err = db.sk.filterInput(in, m)
	}
	if errors.Is(err, prefilter.ErrUnguarded) && in.fd >= 0 {
		// Not even the guard against VLAN-tagged frames could be
		// attached: stop relaying from the socket rather than relay
		// another VLAN's traffic; the retry opens it again.
		db.sk.closeInput(in)
	}
	if errors.Is(err, prefilter.ErrUnfiltered) {
		if !in.unfiltered {
			db.log.Warn("input relays without a kernel prefilter; unwanted traffic is dropped in userspace", "ifindex", in.ifindex, "err", err)
		}
		in.unfiltered, err = true, nil
	} else if err == nil {
		in.unfiltered = false
	}
	if err != nil && (in.err == nil || in.err.Error() != err.Error()) {
		db.log.Warn("cannot receive on input", "ifindex", in.ifindex, "err", err)
	}
	in.err = err
}

// rebuildTable builds a new lookup table over every keyed rule. Two rules
// with the same input (which the supervisor never sends) would make lookups
// ambiguous: the one with the smaller id keeps the input and the other gets
// an error.
func (db *ruleDB) rebuildTable() {
	rules := make([]*rule, 0, len(db.byID))
	keys := make([]ruleset.Key, 0, len(db.byID))
	for _, r := range db.byID {
		r.dupOf = ""
		if r.in != nil {
			rules = append(rules, r)
			keys = append(keys, r.key)
		}
	}
	t, err := ruleset.NewTable(keys)
	if err != nil {
		rules, keys = dedupe(rules)
		if t, err = ruleset.NewTable(keys); err != nil {
			// Unreachable: dedupe removed every duplicate key.
			db.log.Error("cannot build lookup table", "err", err)
			t, rules = nil, nil
		}
	}
	db.table, db.byIndex = t, rules
	db.indexTraces()
}

// dedupe keeps, of rules with equal keys, the one with the smallest id and
// marks the others.
func dedupe(rules []*rule) ([]*rule, []ruleset.Key) {
	slices.SortFunc(rules, func(a, b *rule) int { return strings.Compare(a.wr.ID, b.wr.ID) })
	owner := make(map[ruleset.Key]*rule, len(rules))
	kept := rules[:0]
	keys := make([]ruleset.Key, 0, len(rules))
	for _, r := range rules {
		if o := owner[r.key]; o != nil {
			r.dupOf = o.wr.ID
			continue
		}
		owner[r.key] = r
		kept = append(kept, r)
		keys = append(keys, r.key)
	}
	return kept, keys
}

// retry tries again to open the inputs and outputs that failed to open: an
// output interface may have gained an address since.
func (db *ruleDB) retry() {
	for _, in := range db.inputs {
		if in.fd < 0 && in.rules > 0 {
			in.dirty = true
			db.dirty = true
		}
	}
	for _, e := range db.egress {
		if e.fd < 0 {
			db.openEgress(e)
		}
	}
	db.commit()
}

// close releases every socket; the database is empty afterwards.
func (db *ruleDB) close() {
	db.replaceAll(nil)
	db.commit()
}

// errorOf returns r.errorText(), computed again only after socket state
// changed, so that reporting many rules with errors stays cheap.
func (db *ruleDB) errorOf(r *rule) string {
	if r.errGen != db.gen {
		r.errText, r.errGen = r.errorText(), db.gen
	}
	return r.errText
}

// errorText says why the worker cannot serve (part of) r, or "" when it
// can. It allocates only when there is an error.
func (r *rule) errorText() string {
	var parts []string
	switch {
	case r.keyErr != nil:
		parts = append(parts, fmt.Sprintf("input: %v", r.keyErr))
	case r.dupOf != "":
		parts = append(parts, fmt.Sprintf("input: same input as rule %q", r.dupOf))
	case r.in.err != nil:
		parts = append(parts, fmt.Sprintf("input %s: %v", r.wr.Input.Interface, r.in.err))
	}
	for i := range r.outputs {
		o := &r.outputs[i]
		if err := o.failure(); err != nil {
			parts = append(parts, fmt.Sprintf("outputs[%d] %s: %v", i, o.dest, err))
		}
	}
	return strings.Join(parts, "; ")
}

// failure says why o cannot send: why it could not be resolved, or why its
// egress socket failed; nil when it can.
func (o *output) failure() error {
	if o.err == nil && o.d.eg.err != nil {
		return o.d.eg.err
	}
	return o.err
}

// outputErrors returns, for each of r's outputs, why it cannot send (the
// text errorText gives after its destination; "" when it can), or nil when
// every output can. It allocates only when there is an error.
func (r *rule) outputErrors() []string {
	var errs []string
	for i := range r.outputs {
		if err := r.outputs[i].failure(); err != nil {
			if errs == nil {
				errs = make([]string, len(r.outputs))
			}
			errs[i] = err.Error()
		}
	}
	return errs
}

// counters returns r's counters as a snapshot reports them.
func (r *rule) counters(errText string) stats.RuleCounters {
	var rc stats.RuleCounters
	r.countersInto(&rc, errText)
	return rc
}

// countersInto sets rc to r's counters as a snapshot reports them, reusing
// rc.Outputs. It allocates only when r's error changed since the last call
// (or rc.Outputs is too short): rc shares r's cached output errors, which
// are replaced, never modified, so another goroutine may read rc.
func (r *rule) countersInto(rc *stats.RuleCounters, errText string) {
	outs := rc.Outputs[:0]
	for i := range r.outputs {
		outs = append(outs, r.outputs[i].cnt)
	}
	*rc = stats.RuleCounters{ID: r.wr.ID, PacketsIn: r.packetsIn, BytesIn: r.bytesIn, Outputs: outs, Error: errText}
	if errText != "" {
		if r.outErrsFor != errText {
			r.outErrs, r.outErrsFor = r.outputErrors(), errText
		}
		rc.OutputErrors = r.outErrs
	}
}

// changedSince reports whether r's counters or error differ from the last
// snapshot sent.
func (r *rule) changedSince(errText string) bool {
	if r.forceReport || r.packetsIn != r.reported.packetsIn || r.bytesIn != r.reported.bytesIn ||
		errText != r.reported.err {
		return true
	}
	for i := range r.outputs {
		if r.outputs[i].cnt != r.outputs[i].reported {
			return true
		}
	}
	return false
}

// markReported records that a snapshot carrying rc, r's state when it was
// taken (countersInto), was sent.
func (r *rule) markReported(rc *stats.RuleCounters) {
	r.reported = ruleReport{packetsIn: rc.PacketsIn, bytesIn: rc.BytesIn, err: rc.Error}
	r.forceReport = false
	for i := range min(len(r.outputs), len(rc.Outputs)) {
		r.outputs[i].reported = rc.Outputs[i]
	}
}
