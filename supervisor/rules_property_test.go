package supervisor

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
	"github.com/mcrelay/mcr/supervisor/membership"
	"github.com/mcrelay/mcr/supervisor/pool"
)

// The property test drives a master through random sequences of rule
// changes (adds, removes, config loads through replace and reloads of a
// config file through the daemon) and link and address events, and after
// every step compares everything the master derives with a model that
// recomputes it from scratch: each rule's state, output states and error,
// the rules the data plane holds (ifindexes, fanout ids, address
// generations), the ruleset hash and socket grants of a real Pool fed the
// same updates, the memberships and their reference counts, and the
// master's indexes. Its knobs:
const (
	// propSeedEnv fixes the seed (the failure message gives it); unset,
	// the seed is the time.
	propSeedEnv = "MCR_RULES_PROPERTY_SEED"
	// propStepsEnv sets the number of steps, for a longer run:
	//
	//	MCR_RULES_PROPERTY_STEPS=200000 go test -run TestRulesProperty ./supervisor/
	propStepsEnv = "MCR_RULES_PROPERTY_STEPS"
	// propDefaultSteps runs in about a second.
	propDefaultSteps = 3000
)

func TestRulesProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(propSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", propSeedEnv, s, err)
		}
	}
	steps := propDefaultSteps
	if s := os.Getenv(propStepsEnv); s != "" {
		var err error
		if steps, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s=%q: %v", propStepsEnv, s, err)
		}
	}
	pt := newPropTest(t, seed)
	for i := range steps {
		pt.step(i)
	}
	t.Logf("%d steps, seed %d; ops: %v", steps, seed, pt.ops)
}

// Names the generator draws from: few, so that rules collide on ids,
// inputs and interfaces.
var (
	propIfaces    = []string{"in0", "in1", "out0", "out1"}
	propInGroups  = []string{"239.1.1.1", "239.1.1.2", "ff3e::1", "10.0.0.5"}
	propOutGroups = []string{"239.2.2.2", "239.2.2.3", "ff3e::2", "10.1.0.50", "fd00::50"}
	propIDs       = []string{"r0", "r1", "r2", "r3", "r4", "r5", ""} // "": the default id
)

// propLink is a link as the model knows it: what the kernel has, which the
// master is told unless events are lost on purpose.
type propLink struct {
	index int
	up    bool
}

type propFamily struct {
	index int
	v6    bool
}

// propAddrs is the model's copy of the master's view of one family of
// addresses of one link.
type propAddrs struct {
	set map[netip.Prefix]bool
}

type propTest struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	tm   *testMaster
	pool *pool.Pool // fed the same updates as the fake data plane
	d    *daemon

	// The model.
	rules     map[string]ruleset.Rule // by id, normalised
	links     map[string]propLink     // the kernel's links, by name
	addrs     map[propFamily]map[netip.Prefix]bool
	seenLinks map[string]propLink // what the master was told
	seenAddrs map[propFamily]*propAddrs
	nextIndex int
	nextAddr  int

	history []string // the latest ops, for the failure message
	ops     map[string]int
}

// teeDataPlane hands every update to both data planes.
type teeDataPlane struct{ a, b dataPlane }

func (t teeDataPlane) Update(add []controlproto.WorkerRule, remove []string) {
	t.a.Update(slices.Clone(add), slices.Clone(remove))
	t.b.Update(add, remove)
}

func (t teeDataPlane) Workers() []controlproto.WorkerInfo { return t.a.Workers() }

func newPropTest(t *testing.T, seed uint64) *propTest {
	tm := newTestMaster(t)
	wp := pool.New(pool.Config{Logger: testLogger(nil), Egress: fakeEgressOps()})
	tm.master.dp = teeDataPlane{tm.dp, wp}
	tm.master.log = testLogger(nil) // thousands of steps: the log is not looked at
	dir := t.TempDir()
	pt := &propTest{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		tm: tm, pool: wp,
		d:     &daemon{log: testLogger(nil), configPath: filepath.Join(dir, "rules.json"), master: tm.master},
		rules: map[string]ruleset.Rule{}, links: map[string]propLink{},
		addrs: map[propFamily]map[netip.Prefix]bool{}, seenLinks: map[string]propLink{},
		seenAddrs: map[propFamily]*propAddrs{},
		nextIndex: 10, ops: map[string]int{},
	}
	return pt
}

// step runs one random operation and checks the result.
func (pt *propTest) step(i int) {
	defer func() {
		if r := recover(); r != nil {
			pt.fail(i, fmt.Sprintf("panic: %v", r))
		}
	}()
	ops := []struct {
		name   string
		weight int
		run    func() string
	}{
		{"add", 6, pt.opAdd},
		{"remove", 3, pt.opRemove},
		{"load", 4, pt.opLoad},
		{"reload", 2, pt.opReload},
		{"link up", 3, pt.opLinkUp},
		{"link down", 2, pt.opLinkDown},
		{"link gone", 1, pt.opLinkGone},
		{"link recreated", 1, pt.opLinkRecreated},
		{"link renamed", 1, pt.opLinkRenamed},
		{"address", 2, pt.opAddr},
		{"events lost, relisted", 1, pt.opRelist},
	}
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	n := pt.rng.IntN(total)
	for _, op := range ops {
		if n -= op.weight; n < 0 {
			desc := op.run()
			pt.ops[op.name]++
			pt.history = append(pt.history, fmt.Sprintf("%d %s: %s", i, op.name, desc))
			if len(pt.history) > 25 {
				pt.history = pt.history[1:]
			}
			if msg := pt.check(); msg != "" {
				pt.fail(i, msg)
			}
			return
		}
	}
}

func (pt *propTest) fail(i int, msg string) {
	pt.t.Helper()
	pt.t.Fatalf("step %d, seed %d (rerun with %s=%d): %s\nlatest steps:\n  %s",
		i, pt.seed, propSeedEnv, pt.seed, msg, strings.Join(pt.history, "\n  "))
}

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// randomInput returns an input on a random interface, any-source or, for a
// multicast group, sometimes source-specific.
func (pt *propTest) randomInput() ruleset.Input {
	in := ruleset.Input{Interface: pick(pt.rng, propIfaces), Group: pick(pt.rng, propInGroups), Port: 5000 + pt.rng.IntN(2)}
	if g := netip.MustParseAddr(in.Group); g.IsMulticast() && pt.rng.IntN(3) == 0 {
		in.Source = "10.0.0.9"
		if g.Is6() {
			in.Source = "fd00::9"
		}
	}
	return in
}

func (pt *propTest) randomOutput() ruleset.Output {
	o := ruleset.Output{Interface: pick(pt.rng, propIfaces), Group: pick(pt.rng, propOutGroups), Port: 6000 + pt.rng.IntN(2)}
	if pt.rng.IntN(3) == 0 {
		o.TTL = 8
	}
	return o
}

// randomRule returns a valid rule with 1 to 3 outputs.
func (pt *propTest) randomRule() ruleset.Rule {
	r := ruleset.Rule{ID: pick(pt.rng, propIDs), Input: pt.randomInput()}
	for range 1 + pt.rng.IntN(3) {
		pt.addOutput(&r)
	}
	return r
}

// addOutput adds a random output that keeps r valid, if one is found.
func (pt *propTest) addOutput(r *ruleset.Rule) {
	for range 10 {
		c := *r
		c.Outputs = append(slices.Clone(r.Outputs), pt.randomOutput())
		c.Outputs[len(c.Outputs)-1], c.Outputs[pt.rng.IntN(len(c.Outputs))] =
			c.Outputs[pt.rng.IntN(len(c.Outputs))], c.Outputs[len(c.Outputs)-1]
		if valid(c) {
			*r = c
			return
		}
	}
}

// valid reports whether r, normalised (a rule without id gets its default
// one), is valid.
func valid(r ruleset.Rule) bool {
	r.Outputs = slices.Clone(r.Outputs)
	r.Normalize()
	return r.Validate() == nil
}

// describe says what a rule is, shortly.
func describe(r ruleset.Rule) string {
	var outs []string
	for _, o := range r.Outputs {
		outs = append(outs, o.Destination())
	}
	id := r.ID
	if id == "" {
		id = "(default)"
	}
	return fmt.Sprintf("%s %s -> %s", id, describeInput(r.Input), strings.Join(outs, ","))
}

func (pt *propTest) opAdd() string {
	r := pt.randomRule()
	n := r
	n.Outputs = slices.Clone(r.Outputs)
	n.Normalize()
	wantCode := ""
	if _, dup := pt.rules[n.ID]; dup {
		wantCode = controlproto.CodeAlreadyExists
	}
	for _, o := range pt.rules {
		if o.Input.Key() == n.Input.Key() {
			wantCode = controlproto.CodeAlreadyExists
		}
	}
	id, err := pt.tm.add(r)
	gotCode := ""
	if err != nil {
		gotCode = err.Code
	}
	if gotCode != wantCode || (err == nil && id != n.ID) {
		pt.t.Fatalf("seed %d: add %s = %q, %v; want id %q, error code %q", pt.seed, describe(r), id, err, n.ID, wantCode)
	}
	if err == nil {
		pt.rules[n.ID] = n
	}
	if gotCode == "" {
		gotCode = "ok"
	}
	return describe(r) + " " + gotCode
}

func (pt *propTest) opRemove() string {
	ids := slices.Sorted(maps.Keys(pt.rules))
	id := "nosuch"
	if len(ids) > 0 && pt.rng.IntN(5) > 0 {
		id = pick(pt.rng, ids)
	}
	err := pt.tm.remove(id)
	_, had := pt.rules[id]
	if had != (err == nil) {
		pt.t.Fatalf("seed %d: remove %q: %v; the model has it: %v", pt.seed, id, err, had)
	}
	delete(pt.rules, id)
	return id
}

// nextConfig returns a random ruleset derived from the model's: rules kept,
// dropped, changed (outputs gained, lost or reordered, input or id changed)
// and new ones, in random order, valid as a set.
func (pt *propTest) nextConfig() []ruleset.Rule {
	var next []ruleset.Rule
	for _, id := range slices.Sorted(maps.Keys(pt.rules)) {
		r := pt.rules[id]
		r.Outputs = slices.Clone(r.Outputs)
		switch pt.rng.IntN(9) {
		case 0:
			continue // dropped
		case 1:
			pt.addOutput(&r)
		case 2:
			if len(r.Outputs) > 1 {
				i := pt.rng.IntN(len(r.Outputs))
				r.Outputs = slices.Delete(r.Outputs, i, i+1)
			}
		case 3:
			pt.rng.Shuffle(len(r.Outputs), func(i, j int) { r.Outputs[i], r.Outputs[j] = r.Outputs[j], r.Outputs[i] })
		case 4:
			in := pt.randomInput()
			if valid(ruleset.Rule{ID: r.ID, Input: in, Outputs: r.Outputs}) {
				r.Input = in
			}
		case 5:
			r.ID = pick(pt.rng, propIDs)
		case 6:
			r.Outputs[0].TTL = 8 - r.Outputs[0].TTL
		}
		next = append(next, r)
	}
	for range pt.rng.IntN(3) {
		next = append(next, pt.randomRule())
	}
	pt.rng.Shuffle(len(next), func(i, j int) { next[i], next[j] = next[j], next[i] })
	// Drop rules until the set is valid (duplicate ids or inputs).
	for ruleset.ValidateSet(next) != nil {
		next = next[:len(next)-1]
	}
	return next
}

// expectReplace applies next to the model and returns the LoadConfigResult
// it must give.
func (pt *propTest) expectReplace(next []ruleset.Rule) controlproto.LoadConfigResult {
	var want controlproto.LoadConfigResult
	rules := map[string]ruleset.Rule{}
	for _, r := range next {
		r.Outputs = slices.Clone(r.Outputs)
		r.Normalize()
		rules[r.ID] = r
		old, had := pt.rules[r.ID]
		switch {
		case had && string(old.Canonical()) == string(r.Canonical()):
			want.Unchanged++
		case had:
			want.Removed++
			want.Added++
		default:
			want.Added++
		}
	}
	for id := range pt.rules {
		if _, ok := rules[id]; !ok {
			want.Removed++
		}
	}
	pt.rules = rules
	return want
}

func (pt *propTest) opLoad() string {
	next := pt.nextConfig()
	want := pt.expectReplace(next)
	if got := pt.tm.replace(next); got != want {
		pt.t.Fatalf("seed %d: replace = %+v, want %+v", pt.seed, got, want)
	}
	return fmt.Sprintf("%d rules, %+v", len(next), want)
}

// opReload writes a config file and reloads it as SIGHUP does; half the
// time it is the ruleset the master holds, which must send nothing.
func (pt *propTest) opReload() string {
	next := pt.nextConfig()
	same := pt.rng.IntN(2) == 0
	if same {
		next = pt.tm.config().Rules
	}
	if err := writeConfigFile(pt.d.configPath, func() ([]byte, error) { return ruleset.EncodeConfig(ruleset.Config{Rules: next}) }); err != nil {
		pt.t.Fatal(err)
	}
	pt.tm.dp.updates()
	want := pt.expectReplace(next)
	pt.d.reload()
	if u := pt.tm.dp.updates(); same && len(u) > 0 {
		pt.t.Fatalf("seed %d: reloading the unchanged ruleset sent %v to the data plane", pt.seed, u)
	}
	return fmt.Sprintf("%d rules, same=%v, %+v", len(next), same, want)
}

// tell reports the kernel's link name to the master, as netlink would.
func (pt *propTest) tell(name string) {
	l, ok := pt.links[name]
	if !ok {
		old := pt.seenLinks[name]
		pt.tm.LinkDeleted(links.Link{Name: name, Index: old.index})
		pt.forgetLink(name)
		return
	}
	old, had := pt.seenLinks[name]
	if had && old.index != l.index {
		pt.forgetLink(name) // recreated: the old index goes with its deletion or the new link
	}
	pt.seenLinks[name] = l
	pt.tm.LinkChanged(links.Link{Name: name, Index: l.index, Up: l.up})
}

// forgetLink drops the model's view of the link the master knew by name.
func (pt *propTest) forgetLink(name string) {
	old := pt.seenLinks[name]
	delete(pt.seenLinks, name)
	delete(pt.seenAddrs, propFamily{old.index, false})
	delete(pt.seenAddrs, propFamily{old.index, true})
}

func (pt *propTest) opLinkUp() string   { return pt.setLink(true) }
func (pt *propTest) opLinkDown() string { return pt.setLink(false) }

// setLink makes a random link up or down, creating it if absent. A
// duplicated event (nothing changed) must send nothing.
func (pt *propTest) setLink(up bool) string {
	name := pick(pt.rng, propIfaces)
	l, ok := pt.links[name]
	if !ok {
		l = propLink{index: pt.newIndex()}
	}
	l.up = up
	pt.links[name] = l
	pt.tm.dp.updates()
	dup := ok && pt.seenLinks[name] == l
	pt.tell(name)
	if u := pt.tm.dp.updates(); dup && len(u) > 0 {
		pt.t.Fatalf("seed %d: a duplicated link event sent %v to the data plane", pt.seed, u)
	}
	return fmt.Sprintf("%s %d", name, l.index)
}

func (pt *propTest) opLinkGone() string {
	name := pick(pt.rng, propIfaces)
	if _, ok := pt.links[name]; !ok {
		return name + " (absent)"
	}
	pt.dropLink(name)
	pt.tell(name)
	return name
}

// dropLink takes a link out of the kernel, with its addresses.
func (pt *propTest) dropLink(name string) {
	l := pt.links[name]
	delete(pt.links, name)
	delete(pt.addrs, propFamily{l.index, false})
	delete(pt.addrs, propFamily{l.index, true})
}

// opLinkRecreated replaces a link by a new one with the same name; the new
// link's event comes before or after the old one's deletion.
func (pt *propTest) opLinkRecreated() string {
	name := pick(pt.rng, propIfaces)
	old, ok := pt.links[name]
	if !ok {
		return name + " (absent)"
	}
	pt.dropLink(name)
	l := propLink{index: pt.newIndex(), up: pt.rng.IntN(2) == 0}
	pt.links[name] = l
	if pt.rng.IntN(2) == 0 {
		pt.tm.LinkDeleted(links.Link{Name: name, Index: old.index})
		pt.forgetLink(name)
		pt.tell(name)
		return fmt.Sprintf("%s %d -> %d, deletion first", name, old.index, l.index)
	}
	pt.tell(name)
	pt.tm.LinkDeleted(links.Link{Name: name, Index: old.index}) // late: changes nothing
	return fmt.Sprintf("%s %d -> %d, deletion late", name, old.index, l.index)
}

// opLinkRenamed renames a link to another of the names; a link holding
// that name in the view is gone (its deletion was lost).
func (pt *propTest) opLinkRenamed() string {
	from, to := pick(pt.rng, propIfaces), pick(pt.rng, propIfaces)
	l, ok := pt.links[from]
	if !ok || from == to {
		return from + " (absent or same name)"
	}
	if _, taken := pt.links[to]; taken {
		pt.dropLink(to)
		pt.forgetLink(to)
	}
	delete(pt.links, from)
	pt.links[to] = l
	// The master sees the index under its new name; the old name no
	// longer resolves, and the link keeps its addresses.
	delete(pt.seenLinks, from)
	pt.seenLinks[to] = l
	pt.tm.LinkChanged(links.Link{Name: to, Index: l.index, Up: l.up})
	return fmt.Sprintf("%s -> %s (%d)", from, to, l.index)
}

func (pt *propTest) newIndex() int {
	pt.nextIndex++
	return pt.nextIndex
}

// opAddr adds an address to a link or removes one, of either family.
func (pt *propTest) opAddr() string {
	name := pick(pt.rng, propIfaces)
	l, ok := pt.links[name]
	if !ok {
		return name + " (absent)"
	}
	f := propFamily{l.index, pt.rng.IntN(2) == 0}
	set := pt.addrs[f]
	var a links.Addr
	present := len(set) == 0 || pt.rng.IntN(2) == 0
	if present {
		pt.nextAddr++
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(pt.nextAddr >> 8), byte(pt.nextAddr)}), 24)
		if f.v6 {
			p = netip.MustParsePrefix(fmt.Sprintf("fd00:9::%x/64", pt.nextAddr))
		}
		if set == nil {
			set = map[netip.Prefix]bool{}
			pt.addrs[f] = set
		}
		set[p] = true
		a = links.Addr{Index: l.index, Prefix: p}
	} else {
		p := pick(pt.rng, slices.SortedFunc(maps.Keys(set), func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) }))
		delete(set, p)
		a = links.Addr{Index: l.index, Prefix: p}
	}
	sa := pt.seenAddrs[f]
	if sa == nil {
		sa = &propAddrs{set: map[netip.Prefix]bool{}}
		pt.seenAddrs[f] = sa
	}
	if present {
		sa.set[a.Prefix] = true
	} else {
		delete(sa.set, a.Prefix)
	}
	pt.tm.AddrChanged(a, present)
	return fmt.Sprintf("%s %v present=%v", name, a.Prefix, present)
}

// opRelist changes links and addresses without telling the master, as if
// netlink events were lost, then lists everything as the follower does
// after an overrun.
func (pt *propTest) opRelist() string {
	var changes []string
	for range pt.rng.IntN(4) {
		name := pick(pt.rng, propIfaces)
		switch l, ok := pt.links[name]; {
		case !ok:
			pt.links[name] = propLink{index: pt.newIndex(), up: pt.rng.IntN(2) == 0}
			changes = append(changes, name+" appeared")
		case pt.rng.IntN(3) == 0:
			pt.dropLink(name)
			changes = append(changes, name+" vanished")
		default:
			l.up = !l.up
			pt.links[name] = l
			changes = append(changes, fmt.Sprintf("%s up=%v", name, l.up))
		}
	}
	var all []links.Link
	for name, l := range pt.links {
		all = append(all, links.Link{Name: name, Index: l.index, Up: l.up})
	}
	var addrs []links.Addr
	for f, set := range pt.addrs {
		for p := range set {
			addrs = append(addrs, links.Addr{Index: f.index, Prefix: p})
		}
	}
	// The model of links.View.Replace and links.Addrs.Replace.
	listed := map[int]bool{}
	for _, l := range pt.links {
		listed[l.index] = true
	}
	pt.seenLinks = maps.Clone(pt.links)
	pt.seenAddrs = map[propFamily]*propAddrs{}
	for f, set := range pt.addrs {
		if listed[f.index] && len(set) > 0 {
			pt.seenAddrs[f] = &propAddrs{set: maps.Clone(set)}
		}
	}
	pt.tm.LinksListed(all)
	pt.tm.AddrsListed(addrs)
	return strings.Join(changes, ", ")
}

// stateOfModel is the state a rule or output on interface name has.
func (pt *propTest) stateOfModel(name string) (propLink, string) {
	l, ok := pt.seenLinks[name]
	switch {
	case !ok:
		return l, controlproto.StatePending
	case !l.up:
		return l, controlproto.StateDown
	}
	return l, controlproto.StateActive
}

// check compares the master with the model and returns what differs.
func (pt *propTest) check() string {
	var problems []string
	report := func(what string, diff string) {
		if diff != "" {
			problems = append(problems, fmt.Sprintf("%s (-want +got):\n%s", what, diff))
		}
	}

	// Rules and their states.
	type status struct {
		Rule         ruleset.Rule
		State        string
		OutputStates []string
		Error        string
	}
	wantStatus := map[string]status{}
	wantSent := map[string]controlproto.WorkerRule{}
	wantJoined := map[string]int{}
	var wantRules, wantOutputs stats.StateCounts
	for id, r := range pt.rules {
		in, state := pt.stateOfModel(r.Input.Interface)
		st := status{Rule: r, State: state, OutputStates: []string{}}
		countState(&wantRules, state)
		wr := controlproto.WorkerRule{Rule: r, InputIfIndex: in.index, OutputIfIndex: make([]int, len(r.Outputs))}
		addrs, known := make([][]string, len(r.Outputs)), false
		for i, o := range r.Outputs {
			l, os := pt.stateOfModel(o.Interface)
			st.OutputStates = append(st.OutputStates, os)
			countState(&wantOutputs, os)
			if os == controlproto.StatePending {
				continue
			}
			wr.OutputIfIndex[i] = l.index
			sa := pt.seenAddrs[propFamily{l.index, netip.MustParseAddr(o.Group).Is6()}]
			if sa == nil || o.Source != "" || o.PreserveSource {
				continue
			}
			for _, p := range slices.SortedFunc(maps.Keys(sa.set), func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) }) {
				addrs[i] = append(addrs[i], p.Addr().String())
			}
			known = known || len(addrs[i]) > 0
		}
		if known {
			wr.OutputAddrs = addrs
		}
		wantStatus[id] = st
		if state != controlproto.StatePending {
			wantSent[id] = wr
		}
		if g := netip.MustParseAddr(r.Input.Group); state == controlproto.StateActive && g.IsMulticast() {
			var src netip.Addr
			if r.Input.Source != "" {
				src = netip.MustParseAddr(r.Input.Source)
			}
			wantJoined[fmt.Sprintf("%s@%d", membership.Group{Addr: g, Source: src}.String(), in.index)]++
		}
	}
	gotStatus := map[string]status{}
	for _, rs := range pt.tm.list() {
		gotStatus[rs.ID] = status{Rule: rs.Rule, State: rs.State, OutputStates: append([]string{}, rs.OutputStates...), Error: rs.Error}
	}
	report("rules", cmp.Diff(wantStatus, gotStatus))
	gotRules, gotOutputs := pt.tm.counts()
	report("rule and output counts", cmp.Diff([2]stats.StateCounts{wantRules, wantOutputs}, [2]stats.StateCounts{gotRules, gotOutputs}))

	// What the data plane holds. Fanout ids are the master's choice: one
	// per input ifindex, distinct, which the model then takes.
	gotSent := map[string]controlproto.WorkerRule{}
	fanouts := map[int]int{}
	for _, id := range pt.tm.dp.ids() {
		wr, _ := pt.tm.dp.rule(id)
		gotSent[id] = wr
		if f, ok := fanouts[wr.InputIfIndex]; ok && f != wr.FanoutID {
			problems = append(problems, fmt.Sprintf("rules on ifindex %d sent with fanout ids %d and %d", wr.InputIfIndex, f, wr.FanoutID))
		}
		fanouts[wr.InputIfIndex] = wr.FanoutID
	}
	seenFanout := map[int]int{}
	for ix, f := range fanouts {
		if f < 1 || f > maxFanoutID {
			problems = append(problems, fmt.Sprintf("ifindex %d: fanout id %d", ix, f))
		}
		if other, dup := seenFanout[f]; dup {
			problems = append(problems, fmt.Sprintf("ifindexes %d and %d share fanout id %d", ix, other, f))
		}
		seenFanout[f] = ix
	}
	for id, wr := range wantSent {
		wr.FanoutID = fanouts[wr.InputIfIndex]
		wantSent[id] = wr
	}
	report("data plane rules", cmp.Diff(wantSent, gotSent))

	// The pool fed the same updates: ruleset hash, socket grants and
	// egress sockets held, with their outputs.
	var hash ruleset.SetHash
	grants := relaysock.NewGrants()
	wantEgress := map[relaysock.EgressKey]int{}
	for _, wr := range wantSent {
		hash.Add(wr.Canonical())
		grants.Add(wr)
		for i := range wr.Outputs {
			if k, err := relaysock.EgressKeyFor(wr, i); err == nil {
				wantEgress[k]++
			}
		}
	}
	held := pt.pool.Holding()
	report("pool egress sockets", cmp.Diff(wantEgress, held.Egress, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{})))
	gotHash, gotGrants, poolIDs := held.Hash, held.Grants, held.RuleIDs
	report("pool rule ids", cmp.Diff(slices.Sorted(maps.Keys(wantSent)), poolIDs))
	if gotHash != hash.String() {
		problems = append(problems, fmt.Sprintf("pool ruleset hash %s, want %s", gotHash, hash.String()))
	}
	if !reflect.DeepEqual(grants, gotGrants) {
		problems = append(problems, fmt.Sprintf("pool grants %+v, want %+v", *gotGrants, *grants))
	}

	// Memberships, with one reference per rule, and no helper socket
	// left open without a membership.
	pt.tm.mu.Lock()
	gotJoined := map[string]int{}
	for g, refs := range pt.tm.groups.All() {
		gotJoined[fmt.Sprintf("%s@%d", g.String(), g.Ifindex)] = refs
	}
	_, sockets := pt.tm.groups.Count()
	wantInputs := map[ruleset.InputKey]string{}
	// Interface indexes as "name id" pairs, sorted.
	var wantByInput, wantByOutput []string
	for id, r := range pt.rules {
		wantInputs[r.Input.Key()] = id
		wantByInput = append(wantByInput, r.Input.Interface+" "+id)
		for _, o := range r.Outputs {
			if pair := o.Interface + " " + id; !slices.Contains(wantByOutput, pair) {
				wantByOutput = append(wantByOutput, pair)
			}
		}
	}
	pairs := func(index map[string]map[string]*ruleEntry) []string {
		var out []string
		for name, set := range index {
			for id := range set {
				out = append(out, name+" "+id)
			}
		}
		slices.Sort(out)
		return out
	}
	slices.Sort(wantByInput)
	slices.Sort(wantByOutput)
	gotByInput, gotByOutput := pairs(pt.tm.byInput), pairs(pt.tm.byOutput)
	gotInputs := maps.Clone(pt.tm.inputs)
	var staleFanout []int
	seenIndexes := map[int]bool{}
	for _, l := range pt.seenLinks {
		seenIndexes[l.index] = true
	}
	for ix := range pt.tm.master.fanout.byIf {
		if !seenIndexes[ix] {
			staleFanout = append(staleFanout, ix)
		}
	}
	pt.tm.mu.Unlock()
	report("memberships", cmp.Diff(wantJoined, gotJoined))
	if pt.tm.kernel.Open != sockets {
		problems = append(problems, fmt.Sprintf("%d helper sockets open, the pools hold %d", pt.tm.kernel.Open, sockets))
	}
	report("input index", cmp.Diff(wantInputs, gotInputs))
	report("input interface index", cmp.Diff(wantByInput, gotByInput))
	report("output interface index", cmp.Diff(wantByOutput, gotByOutput))
	if len(staleFanout) > 0 {
		problems = append(problems, fmt.Sprintf("fanout ids kept for ifindexes %v, which are gone", staleFanout))
	}
	return strings.Join(problems, "\n")
}

// fakeEgressOps are egress sockets that always open, on fd numbers no
// real fd has, and close without touching the kernel.
func fakeEgressOps() *pool.EgressOps {
	var mu sync.Mutex
	next := 1 << 20
	return &pool.EgressOps{
		Open: func(relaysock.EgressKey) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			next++
			return next, nil
		},
		Port:  func(fd int) int { return 40000 + fd%20000 },
		Dup:   func(fd int) (int, error) { return fd, nil },
		Close: func(int) {},
	}
}
