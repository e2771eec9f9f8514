package supervisor

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/jsontext"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
	"github.com/mcrelay/mcr/supervisor/membership"
)

// master owns the master ruleset (the truth every worker's ruleset is
// checked against) and everything derived from it: each rule's resolution
// against the link and address views, its state, the group memberships and
// what the data plane holds. It implements links.Events.
//
// Every rule is resolved by the name of its input interface:
//
//	pending  the interface does not exist: nothing is sent, nothing joined
//	down     it exists but is not up (link.Up): the rule is sent to the
//	         data plane (with the ifindex, so sockets are ready when the
//	         link comes up), its group is not joined
//	active   it exists and is up: sent and joined
//
// Each output has a state of its own, by the name of its interface, with
// the same names: pending (its ifindex is sent as 0 and the workers skip
// it), down (the workers count its failed sends) or active. An output
// without a source address is sent with the addresses of its interface
// (WorkerRule.OutputAddrs), from which the kernel picks its source, so that
// workers recognise its datagrams when a loop brings them back to an
// input.
//
// A rule is sent as a controlproto.WorkerRule with the ifindexes resolved;
// whenever the resolution changes (an interface appears, is recreated with
// a new ifindex, an output interface comes, goes or comes up, the
// addresses of an output interface change) the rule is sent again.
type master struct {
	log   *slog.Logger
	dp    dataPlane
	stats *stats.Aggregator

	// mu serialises every change and read of the fields below: control
	// requests, netlink events and config reloads all take it. The data
	// plane gets each change (dp.Update) with mu held, so it sees changes
	// in the order the master made them; dp.Update must not block on a
	// worker or call back into the master. Nothing that waits on a peer
	// (control-socket I/O) happens under mu.
	mu     sync.Mutex
	rules  map[string]*ruleEntry
	inputs map[ruleset.InputKey]string // input → id of the rule on it
	// byInput and byOutput index the rules by the names of their input
	// interface and of their outputs' interfaces: a link's change costs
	// the rules on it, and byOutput's names are those the listener
	// tables follow.
	byInput  map[string]map[string]*ruleEntry // interface name → id → rule
	byOutput map[string]map[string]*ruleEntry
	links    links.View
	addrs    links.Addrs
	groups   *membership.Joins
	fanout   *fanoutIDs
	// excl, when --exclusive-inputs is on, keeps the kernel's receive
	// path from seeing the streams the data plane holds; nil when off.
	excl *exclusiveInputs
	// version counts the changes of the ruleset (the rules, not what they
	// resolve to), so that a save can tell which changes it holds.
	version uint64
	// ports indexes the outputs that fix a source port, so that AddRule
	// refuses one no socket could serve next to the others.
	ports ruleset.SourcePorts
	// raw says whether transparent outputs can be served.
	raw rawSupport
	// listeners keeps the IGMP/MLD listener tables of the output
	// interfaces (groups.go); nil = none: every output sends.
	listeners *listeners
	// querier is the config file's querier settings in effect, which
	// config and encodedConfig give back.
	querier ruleset.Querier
}

// ruleEntry is one rule of the master ruleset and what it resolved to.
type ruleEntry struct {
	rule  ruleset.Rule // normalised, with its id
	canon []byte       // rule.Canonical(): what config diffs compare
	group netip.Addr   // rule.Input.Group, parsed
	src   netip.Addr   // rule.Input.Source, parsed; zero when any source

	state     linkState   // of the input; zero until first resolved
	outStates []linkState // of each output, in the rule's order
	err       string      // what keeps the rule from being fully served; "" = nothing
	// outIfaces names the interface of each entry of outStates: a
	// changed rule keeps its states until reconcile, and its outputs may
	// have been added, removed or reordered meanwhile.
	outIfaces []string

	sent      *controlproto.WorkerRule // what the data plane holds; nil = not sent
	sentCanon []byte                   // sent.Canonical()
	joined    *membership.Group        // the membership held for the rule

	// saved is the rule as the config file holds it (configEntry), made
	// at its first save; nil until then.
	saved []byte
}

// masterConfig is what a master is built from.
type masterConfig struct {
	Log    *slog.Logger
	DP     dataPlane
	Stats  *stats.Aggregator
	Groups membership.Opener
	Fanout *fanoutIDs
	// Exclusive, when set, drops the relayed streams at each input
	// interface's tc ingress (--exclusive-inputs); nil = off.
	Exclusive inputDropper
	// Raw is what the start-up probe found about raw sockets; the zero
	// value allows transparent outputs.
	Raw rawSupport
	// Listeners, when set, follows the listeners of the output
	// interfaces (when_joined outputs, ListGroups, --querier).
	Listeners *listeners
}

func newMaster(c masterConfig) *master {
	var excl *exclusiveInputs
	if c.Exclusive != nil {
		excl = newExclusiveInputs(c.Exclusive)
	}
	return &master{
		excl:     excl,
		log:      c.Log,
		dp:       c.DP,
		stats:    c.Stats,
		rules:    map[string]*ruleEntry{},
		inputs:   map[ruleset.InputKey]string{},
		byInput:  map[string]map[string]*ruleEntry{},
		byOutput: map[string]map[string]*ruleEntry{},
		links:    links.NewView(),
		addrs:    links.NewAddrs(),
		groups:   membership.New(c.Groups),
		fanout:   c.Fanout,
		raw:      c.Raw,

		listeners: c.Listeners,
	}
}

// add adds r to the ruleset and returns its id (the default id when r has
// none). It normalises and validates r; errors are invalid_argument (the
// field message, or a transparent output this supervisor cannot serve),
// already_exists (the id or the input is taken, or an output's source port
// is another's in a way one socket cannot serve).
func (m *master) add(r ruleset.Rule) (string, *controlproto.Error) {
	r.Normalize()
	if err := r.Validate(); err != nil {
		return "", controlproto.Errorf(controlproto.CodeInvalidArgument, "%v", err)
	}
	if err := m.raw.check("", r); err != nil {
		return "", controlproto.Errorf(controlproto.CodeInvalidArgument, "%v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.rules[r.ID]; dup {
		return "", controlproto.Errorf(controlproto.CodeAlreadyExists, "rule %q already exists", r.ID)
	}
	if other, dup := m.inputs[r.Input.Key()]; dup {
		return "", controlproto.Errorf(controlproto.CodeAlreadyExists, "input %s is already used by rule %q",
			describeInput(r.Input), other)
	}
	if err := m.ports.Check(&r); err != nil {
		return "", controlproto.Errorf(controlproto.CodeAlreadyExists, "%v", err)
	}
	e := newRuleEntry(r)
	m.index(e)
	var b batch
	m.reconcile(e, &b)
	m.flush(&b)
	m.version++
	return r.ID, nil
}

// checkServable refuses a ruleset with a transparent output this
// supervisor cannot serve (rawSupport), naming it as ValidateSet names
// fields: LoadConfig, CheckConfig and SIGHUP check a config with it before
// anything changes.
func (m *master) checkServable(rules []ruleset.Rule) error {
	return m.raw.check("rules", rules...)
}

// describeInput names an input the way errors and logs show it:
// "239.1.1.1:5000@eth0", with " from 10.0.0.9" for a source.
func describeInput(in ruleset.Input) string {
	d := ruleset.Output{Interface: in.Interface, Group: in.Group, Port: in.Port}.Destination()
	if in.Source != "" {
		d += " from " + in.Source
	}
	return d
}

// remove removes rule id; not_found if there is none.
func (m *master) remove(id string) *controlproto.Error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.rules[id]
	if !ok {
		return controlproto.Errorf(controlproto.CodeNotFound, "no rule %s", jsontext.Quote(id))
	}
	m.unindex(e)
	var b batch
	m.release(e, &b)
	m.flush(&b)
	m.version++
	m.log.Info("rule removed", "rule", id)
	return nil
}

// replace makes rules the ruleset, changing only the difference: a rule
// whose canonical encoding is unchanged is not touched (it keeps
// forwarding, its counters and its membership); a changed one is
// re-resolved and sent again, with its counters reset; new ones are added,
// missing ones removed. Memberships of new and changed rules are joined
// before those of removed ones are left, so a group that stays wanted is
// never left in between. rules must be valid as a set (ruleset.ValidateSet).
//
// The result counts a changed rule as removed and added.
func (m *master) replace(rules []ruleset.Rule) controlproto.LoadConfigResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res controlproto.LoadConfigResult
	var gone, fresh []*ruleEntry
	// Unindex every rule that goes or changes first, so the new rules
	// can take their inputs.
	wanted := make(map[string]bool, len(rules))
	for _, r := range rules {
		r.Normalize()
		wanted[r.ID] = true
		e, ok := m.rules[r.ID]
		switch {
		case ok && bytes.Equal(e.canon, r.Canonical()):
			res.Unchanged++
			continue
		case ok:
			m.unindex(e)
			m.stats.RemoveRule(e.rule.ID)
			e.setRule(r)
			res.Removed++
			m.log.Info("rule changed", "rule", r.ID)
		default:
			e = newRuleEntry(r)
		}
		fresh = append(fresh, e)
		res.Added++
	}
	for id, e := range m.rules {
		if !wanted[id] {
			m.unindex(e)
			gone = append(gone, e)
			res.Removed++
		}
	}
	var b batch
	for _, e := range fresh {
		m.index(e)
		m.reconcile(e, &b)
	}
	slices.SortFunc(gone, func(x, y *ruleEntry) int { return cmp.Compare(x.rule.ID, y.rule.ID) })
	for _, e := range gone {
		m.release(e, &b)
		m.log.Info("rule removed", "rule", e.rule.ID)
	}
	m.flush(&b)
	if res.Added+res.Removed > 0 {
		m.version++
	}
	return res
}

func newRuleEntry(r ruleset.Rule) *ruleEntry {
	e := &ruleEntry{}
	e.setRule(r)
	return e
}

// setRule makes r, normalised and valid, the entry's rule.
func (e *ruleEntry) setRule(r ruleset.Rule) {
	e.rule = r
	e.canon = r.Canonical()
	e.saved = nil
	e.group = netip.MustParseAddr(r.Input.Group)
	e.src = netip.Addr{}
	if r.Input.Source != "" {
		e.src = netip.MustParseAddr(r.Input.Source)
	}
}

// index enters e into the ruleset's maps.
func (m *master) index(e *ruleEntry) {
	m.rules[e.rule.ID] = e
	m.inputs[e.rule.Input.Key()] = e.rule.ID
	m.ports.Add(&e.rule)
	addToIndex(m.byInput, e.rule.Input.Interface, e)
	for _, o := range e.rule.Outputs {
		addToIndex(m.byOutput, o.Interface, e)
	}
}

// unindex removes e from the ruleset's maps; what it resolved to stays
// until release or reconcile.
func (m *master) unindex(e *ruleEntry) {
	delete(m.rules, e.rule.ID)
	delete(m.inputs, e.rule.Input.Key())
	m.ports.Remove(&e.rule)
	removeFromIndex(m.byInput, e.rule.Input.Interface, e)
	for _, o := range e.rule.Outputs {
		removeFromIndex(m.byOutput, o.Interface, e)
	}
}

// addToIndex enters e under name in index (byInput or byOutput).
func addToIndex(index map[string]map[string]*ruleEntry, name string, e *ruleEntry) {
	set := index[name]
	if set == nil {
		set = map[string]*ruleEntry{}
		index[name] = set
	}
	set[e.rule.ID] = e
}

// removeFromIndex removes e from name in index; a name without rules goes.
func removeFromIndex(index map[string]map[string]*ruleEntry, name string, e *ruleEntry) {
	delete(index[name], e.rule.ID)
	if len(index[name]) == 0 {
		delete(index, name)
	}
}

// release undoes what e resolved to: its membership, its rule in the data
// plane, its counters.
func (m *master) release(e *ruleEntry, b *batch) {
	if e.joined != nil {
		m.leave(*e.joined)
		e.joined = nil
	}
	unsend(e, b)
	m.stats.RemoveRule(e.rule.ID)
}

// reconcile brings what e resolved to in line with the link view: its
// state, the rule the data plane holds, its membership. Changes for the
// data plane go into b.
func (m *master) reconcile(e *ruleEntry, b *batch) {
	in, exists := m.links.Lookup(e.rule.Input.Interface)
	var problems []string
	var want *controlproto.WorkerRule
	if exists {
		wr, err := m.resolve(e, in)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			want = wr
		}
	}
	m.sendRule(e, want, b)
	if err := m.updateMembership(e, in, exists); err != nil {
		problems = append(problems, err.Error())
	}
	m.setError(e, strings.Join(problems, "; "))
	m.setState(e, stateOf(in, exists), in)
	m.setOutputStates(e)
}

// setError records what keeps e from being fully served and logs a change.
func (m *master) setError(e *ruleEntry, msg string) {
	switch old := e.err; {
	case msg == old:
		return
	case msg != "":
		m.log.Warn("rule error", "rule", e.rule.ID, "error", msg)
	case e.state != 0:
		m.log.Info("rule error cleared", "rule", e.rule.ID, "was", old)
	}
	e.err = msg
}

// resolve returns the rule as the data plane needs it on input link in.
func (m *master) resolve(e *ruleEntry, in links.Link) (*controlproto.WorkerRule, error) {
	fanout, err := m.fanout.get(in.Index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.Name, err)
	}
	wr := &controlproto.WorkerRule{
		Rule:          e.rule,
		InputIfIndex:  in.Index,
		FanoutID:      fanout,
		OutputIfIndex: make([]int, len(e.rule.Outputs)),
	}
	addrs := make([][]string, len(e.rule.Outputs))
	known := false
	for i, o := range e.rule.Outputs {
		out, ok := m.links.Lookup(o.Interface)
		if !ok {
			continue
		}
		wr.OutputIfIndex[i] = out.Index
		if !m.outputAllowed(e, i, out) {
			if wr.OutputIdle == nil {
				wr.OutputIdle = make([]bool, len(e.rule.Outputs))
			}
			wr.OutputIdle[i] = true
		}
		if o.Source == "" && !o.PreserveSource {
			// Validate accepted the group, Normalize canonicalised it.
			addrs[i] = m.addrs.List(out.Index, netip.MustParseAddr(o.Group).Is6())
			known = known || len(addrs[i]) > 0
		}
	}
	if known {
		wr.OutputAddrs = addrs
	}
	return wr, nil
}

// sendRule makes the data plane hold want for e (nothing when nil).
func (m *master) sendRule(e *ruleEntry, want *controlproto.WorkerRule, b *batch) {
	if want == nil {
		unsend(e, b)
		return
	}
	enc := want.Canonical()
	if bytes.Equal(enc, e.sentCanon) {
		return
	}
	if e.sent != nil {
		b.touchInput(e.sent.InputIfIndex)
	}
	b.put(*want)
	e.sent, e.sentCanon = want, enc
}

// unsend removes e's rule from the data plane if it holds it.
func unsend(e *ruleEntry, b *batch) {
	if e.sent != nil {
		b.drop(e.rule.ID, e.sent.InputIfIndex)
		e.sent, e.sentCanon = nil, nil
	}
}

// updateMembership makes e hold the membership its input needs on link in:
// the input group on the interface while it exists and is up, if the group
// is multicast. The new membership is joined before the old one is left.
// A failed join is the rule's error; it is tried again at the next
// reconcile.
func (m *master) updateMembership(e *ruleEntry, in links.Link, exists bool) error {
	var want *membership.Group
	if exists && in.Up && e.group.IsMulticast() {
		want = &membership.Group{Ifindex: in.Index, Addr: e.group, Source: e.src}
	}
	if want != nil && e.joined != nil && *want == *e.joined {
		return nil
	}
	var err error
	if want != nil {
		if err = m.groups.Join(*want); err != nil {
			err = fmt.Errorf("join %s on %s: %w", want, in.Name, err)
			want = nil
		}
	}
	if e.joined != nil {
		m.leave(*e.joined)
	}
	e.joined = want
	return err
}

// leave drops a rule's reference on g. A failed leave only matters to the
// log: the membership is forgotten either way (see membership.Joins.Leave).
func (m *master) leave(g membership.Group) {
	if err := m.groups.Leave(g); err != nil {
		m.log.Debug("leave group", "group", g.String(), "ifindex", g.Ifindex, "err", err)
	}
}

// linkState is the state of a rule's input, or of an output, by its
// interface (controlproto.RuleStatus). The zero value is invalid: a rule
// entry holds it only until its first reconcile, which logs the rule as
// added. String is the name on the wire.
type linkState uint8

const (
	_           linkState = iota
	linkPending           // the interface does not exist
	linkDown              // it exists and is down
	linkActive            // it exists and is up
	// linkIdle is an output's alone: its interface is up, but it sends
	// only while someone listens (when_joined) and no one does.
	linkIdle
)

func (s linkState) String() string {
	switch s {
	case linkPending:
		return controlproto.StatePending
	case linkDown:
		return controlproto.StateDown
	case linkActive:
		return controlproto.StateActive
	case linkIdle:
		return controlproto.StateIdle
	}
	return fmt.Sprintf("linkState(%d)", uint8(s))
}

// stateOf is the state of a rule whose input interface resolved to in.
func stateOf(in links.Link, exists bool) linkState {
	switch {
	case !exists:
		return linkPending
	case !in.Up:
		return linkDown
	}
	return linkActive
}

// setOutputStates records the state of each of e's outputs and logs each
// change once per transition, per output interface (its outputs on one
// interface change together), not per output. The previous state of an
// output is looked up by its interface, not by its position: a config
// reload may have given the rule other outputs since (an interface new to
// the rule has no previous state and logs nothing, as a new rule's).
func (m *master) setOutputStates(e *ruleEntry) {
	next := make([]linkState, len(e.rule.Outputs))
	ifaces := make([]string, len(e.rule.Outputs))
	var logged []string
	for i, o := range e.rule.Outputs {
		l, ok := m.links.Lookup(o.Interface)
		next[i], ifaces[i] = stateOf(l, ok), o.Interface
		if next[i] == linkActive && e.sent != nil && i < len(e.sent.OutputIdle) && e.sent.OutputIdle[i] {
			next[i] = linkIdle
		}
		j := slices.Index(e.outIfaces, o.Interface)
		if j < 0 || e.outStates[j] == next[i] || slices.Contains(logged, o.Interface) {
			continue
		}
		logged = append(logged, o.Interface)
		attrs := []any{"rule", e.rule.ID, "interface", o.Interface, "state", next[i].String(), "from", e.outStates[j].String()}
		if ok {
			attrs = append(attrs, "ifindex", l.Index)
		}
		m.log.Info("output state changed", attrs...)
	}
	e.outStates, e.outIfaces = next, ifaces
}

// setState records e's state and logs a change, once per transition.
func (m *master) setState(e *ruleEntry, state linkState, in links.Link) {
	old := e.state
	if old == state {
		return
	}
	e.state = state
	attrs := []any{"rule", e.rule.ID, "state", state.String(), "interface", e.rule.Input.Interface}
	if in.Index != 0 {
		attrs = append(attrs, "ifindex", in.Index)
	}
	if old == 0 {
		m.log.Info("rule added", attrs...)
		return
	}
	m.log.Info("rule state changed", append(attrs, "from", old.String())...)
}

// LinkChanged implements links.Events.
func (m *master) LinkChanged(l links.Link) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relink(m.links.Set(l))
}

// LinkDeleted implements links.Events. The link's addresses are forgotten
// with it, so the address view does not grow with links that come and go.
func (m *master) LinkDeleted(l links.Link) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relink(m.links.Remove(l))
	m.addrs.Forget(l.Index)
}

// LinksListed implements links.Events. The addresses of links not listed are
// forgotten; those of the listed ones follow in AddrsListed.
func (m *master) LinksListed(all []links.Link) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relink(m.links.Replace(all))
	for _, ix := range m.addrs.Indexes() {
		if _, ok := m.links.ByIndex(ix); !ok {
			m.addrs.Forget(ix)
		}
	}
}

// relink reconciles the rules on the interfaces named (their resolution may
// have changed) and forgets the fanout ids of links the view dropped.
func (m *master) relink(names []string) {
	if len(names) == 0 {
		return
	}
	for ifindex := range m.fanout.byIf {
		if _, ok := m.links.ByIndex(ifindex); !ok {
			m.fanout.release(ifindex)
		}
	}
	affected := map[string]*ruleEntry{}
	for _, name := range names {
		maps.Copy(affected, m.byInput[name])
		maps.Copy(affected, m.byOutput[name])
	}
	var b batch
	for _, id := range slices.Sorted(maps.Keys(affected)) {
		m.reconcile(affected[id], &b)
	}
	m.flush(&b)
}

// AddrChanged implements links.Events. A real change of a link's addresses
// re-resolves the rules on it: those with an output there without a
// source carry the addresses now there in WorkerRule.OutputAddrs, which the
// workers check returning datagrams against.
func (m *master) AddrChanged(a links.Addr, present bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.addrs.Set
	if !present {
		changed = m.addrs.Remove
	}
	if changed(a) {
		m.readdress([]int{a.Index})
	}
}

// AddrsListed implements links.Events.
func (m *master) AddrsListed(all []links.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.readdress(m.addrs.Replace(all))
}

// readdress reconciles the rules on the links with these ifindexes, whose
// addresses changed, and has their listener tables re-read them.
func (m *master) readdress(ifindexes []int) {
	m.listeners.readdress(ifindexes)
	var names []string
	for _, ix := range ifindexes {
		if l, ok := m.links.ByIndex(ix); ok {
			names = append(names, l.Name)
		}
	}
	m.relink(names)
}

// sorted returns the rule entries in id order. The caller holds mu.
func (m *master) sorted() []*ruleEntry {
	es := slices.Collect(maps.Values(m.rules))
	slices.SortFunc(es, func(x, y *ruleEntry) int { return cmp.Compare(x.rule.ID, y.rule.ID) })
	return es
}

// list returns every rule with its state, in id order (ListRules).
func (m *master) list() []controlproto.RuleStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]controlproto.RuleStatus, 0, len(m.rules))
	for _, e := range m.sorted() {
		var outs []string
		for _, s := range e.outStates {
			outs = append(outs, s.String())
		}
		out = append(out, controlproto.RuleStatus{Rule: e.rule, State: e.state.String(),
			OutputStates: outs, Error: e.err})
	}
	return out
}

// counts counts the rules and the outputs by state (GetStats totals).
func (m *master) counts() (rules, outputs stats.StateCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.rules {
		countState(&rules, e.state.String())
		for _, s := range e.outStates {
			countState(&outputs, s.String())
		}
	}
	return rules, outputs
}

// countState counts one rule or output in state.
func countState(c *stats.StateCounts, state string) {
	switch state {
	case controlproto.StateActive:
		c.Active++
	case controlproto.StatePending:
		c.Pending++
	case controlproto.StateDown:
		c.Down++
	case controlproto.StateIdle:
		c.Idle++
	}
}

// config returns the ruleset as a config, rules in id order (GetConfig,
// SaveConfig).
func (m *master) config() ruleset.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := ruleset.Config{Rules: make([]ruleset.Rule, 0, len(m.rules)), Querier: m.querier}
	for _, e := range m.sorted() {
		c.Rules = append(c.Rules, e.rule)
	}
	return c
}

// encodedConfig returns the ruleset encoded as ruleset.EncodeConfig
// encodes config(), and its version. Each rule's part of the file is kept
// from its first save, so saving after every change of a large ruleset
// costs a copy of it rather than encoding it all again.
func (m *master) encodedConfig() ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	es := m.sorted()
	parts := make([][]byte, len(es))
	for i, e := range es {
		if e.saved == nil {
			b, err := configEntry(e.rule)
			if err != nil {
				return nil, 0, err
			}
			e.saved = b
		}
		parts[i] = e.saved
	}
	data, err := withQuerier(joinConfig(parts), m.querier)
	return data, m.version, err
}

// currentVersion returns the version of the ruleset: a save of a config
// of this version or later holds every change made so far.
func (m *master) currentVersion() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version
}

// statsRules describes the rules for the stats report, in id order.
func (m *master) statsRules() []stats.RuleDesc {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]stats.RuleDesc, 0, len(m.rules))
	for _, e := range m.sorted() {
		d := stats.RuleDesc{ID: e.rule.ID, State: e.state.String(), Outputs: make([]stats.OutputDesc, len(e.rule.Outputs))}
		for i, o := range e.rule.Outputs {
			d.Outputs[i] = stats.OutputDesc{Destination: o.Destination(), WhenJoined: o.WhenJoined}
			if i < len(e.outStates) {
				d.Outputs[i].State = e.outStates[i].String()
			}
		}
		out = append(out, d)
	}
	return out
}

// exclusiveDropped returns, per input interface name, the datagrams the
// exclusive-input program dropped since it was attached; nil when
// --exclusive-inputs is off.
func (m *master) exclusiveDropped() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.excl == nil {
		return nil
	}
	return m.excl.dropped(m)
}

// closeExclusive detaches the exclusive-input programs (shutdown): the
// kernel receives the input streams again before the workers stop
// relaying them.
func (m *master) closeExclusive() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.excl != nil {
		m.excl.close(m.log)
	}
}

// flush hands b's changes to the data plane, then brings the exclusive
// inputs of the input ifindexes they touch in line.
func (m *master) flush(b *batch) {
	b.flush(m.dp)
	if m.excl != nil && len(b.inputs) > 0 {
		m.excl.sync(m, b.inputs)
	}
	m.syncListeners()
}

// close leaves every group (shutdown).
func (m *master) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.rules {
		e.joined = nil
	}
	return m.groups.Close()
}

// batch collects the data-plane changes of one master operation, so the
// data plane gets them in one Update; the last change of an id wins.
type batch struct {
	add    map[string]controlproto.WorkerRule
	remove map[string]bool
	// inputs are the input ifindexes of the rules put and dropped (for a
	// re-sent rule, the old one and the new): where the set of streams
	// the data plane relays may have changed.
	inputs map[int]bool
}

func (b *batch) put(wr controlproto.WorkerRule) {
	if b.add == nil {
		b.add = map[string]controlproto.WorkerRule{}
	}
	delete(b.remove, wr.ID)
	b.add[wr.ID] = wr
	b.touchInput(wr.InputIfIndex)
}

// drop removes rule id, which the data plane held with input ifindex.
func (b *batch) drop(id string, ifindex int) {
	if b.remove == nil {
		b.remove = map[string]bool{}
	}
	delete(b.add, id)
	b.remove[id] = true
	b.touchInput(ifindex)
}

func (b *batch) touchInput(ifindex int) {
	if b.inputs == nil {
		b.inputs = map[int]bool{}
	}
	b.inputs[ifindex] = true
}

// flush hands the changes to dp, in id order.
func (b *batch) flush(dp dataPlane) {
	if len(b.add) == 0 && len(b.remove) == 0 {
		return
	}
	var add []controlproto.WorkerRule
	for _, id := range slices.Sorted(maps.Keys(b.add)) {
		add = append(add, b.add[id])
	}
	dp.Update(add, slices.Sorted(maps.Keys(b.remove)))
}
