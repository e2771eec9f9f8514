package supervisor

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/querier"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
)

// fakeTables stands in for the IGMP/MLD sockets: each opened table holds
// the groups the test says have listeners, with their filters.
type fakeTables struct {
	mu     sync.Mutex
	open   map[int]*fakeTable // by ifindex
	opened []string           // "ifindex querier?" per open, in order
	fail   map[int]bool
}

type fakeTable struct {
	f       *fakeTables
	ifindex int
	cfg     querier.Config
	events  func(querier.Event)
	groups  map[netip.Addr]querier.Filter
	closed  bool
	// refreshes counts RefreshAddresses calls.
	refreshes int
}

func newFakeTables() *fakeTables {
	return &fakeTables{open: map[int]*fakeTable{}, fail: map[int]bool{}}
}

func (f *fakeTables) openTable(ifindex int, cfg *querier.Config, events func(querier.Event), _ *slog.Logger) (groupTable, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[ifindex] {
		return nil, errors.New("no CAP_NET_RAW")
	}
	t := &fakeTable{f: f, ifindex: ifindex, cfg: *cfg, events: events, groups: map[netip.Addr]querier.Filter{}}
	f.open[ifindex] = t
	q := ""
	if cfg.Querier {
		q = " querier"
	}
	f.opened = append(f.opened, strconv.Itoa(ifindex)+q)
	return t, nil
}

// set gives group the filter (zero Mode: no listener) and delivers the
// event the querier would.
func (f *fakeTables) set(ifindex int, group string, filter querier.Filter) {
	f.mu.Lock()
	t := f.open[ifindex]
	g := netip.MustParseAddr(group)
	kind := querier.Joined
	if filter.Mode == 0 {
		delete(t.groups, g)
		kind = querier.Left
	} else {
		t.groups[g] = filter
	}
	f.mu.Unlock()
	t.events(querier.Event{Kind: kind, Ifindex: ifindex, Group: g, Filter: filter})
}

func (t *fakeTable) Allowed(group, source netip.Addr) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	f, ok := t.groups[group]
	return ok && f.Allows(source)
}

func (t *fakeTable) Groups() []querier.Group {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	var out []querier.Group
	for g, f := range t.groups {
		out = append(out, querier.Group{Group: g, Filter: f, Compat: querier.IGMPv3})
	}
	slices.SortFunc(out, func(a, b querier.Group) int { return a.Group.Compare(b.Group) })
	return out
}

func (t *fakeTable) Status() ([2]querier.Status, uint64, querier.Drops) {
	role := querier.Listener
	if t.cfg.Querier {
		role = querier.Querier
	}
	return [2]querier.Status{{Family: querier.IPv4, Role: role, Groups: len(t.Groups())},
		{Family: querier.IPv6, Role: role}}, 0, querier.Drops{}
}

func (t *fakeTable) SetQuerier(on bool) {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.cfg.Querier = on
}

func (t *fakeTable) RefreshAddresses() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.refreshes++
}

func (t *fakeTable) Close() error {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.closed = true
	delete(t.f.open, t.ifindex)
	return nil
}

// withListeners gives tm listener tables over fake sockets, with the
// --querier interfaces given.
func withListeners(tm *testMaster, queriers ...string) *fakeTables {
	f := newFakeTables()
	tm.master.listeners = newListeners(listenerConfig{Open: f.openTable, Log: testLogger(tm.log), Queriers: queriers})
	return f
}

// regateNow hands the master what run would, at once.
func regateNow(tm *testMaster) {
	l := tm.master.listeners
	l.changedMu.Lock()
	var ixs []int
	for ix := range l.changed {
		ixs = append(ixs, ix)
	}
	clear(l.changed)
	l.changedMu.Unlock()
	slices.Sort(ixs)
	tm.regate(ixs)
}

func (tm *testMaster) idle(id string) []bool {
	tm.dp.mu.Lock()
	defer tm.dp.mu.Unlock()
	return tm.dp.rules[id].OutputIdle
}

func (tm *testMaster) outputStates(id string) []string {
	for _, rs := range tm.list() {
		if rs.ID == id {
			return rs.OutputStates
		}
	}
	return nil
}

// TestWhenJoinedFollowsListeners: an output with when_joined starts idle,
// turns active when a listener joins its group (one that wants its
// source), idle again when the last leaves; its sibling without
// when_joined always sends, and the tables follow the output interfaces.
func TestWhenJoinedFollowsListeners(t *testing.T) {
	tm := newTestMaster(t)
	f := withListeners(tm, "eth3")
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	tm.LinkChanged(links.Link{Name: "eth3", Index: 5, Up: true})
	r := ruleset.Rule{ID: "a", Input: ruleset.Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000},
		Outputs: []ruleset.Output{
			{Interface: "eth1", Group: "239.2.2.2", Port: 6000, WhenJoined: true, Source: "10.1.0.1"},
			{Interface: "eth1", Group: "239.3.3.3", Port: 6000},
		}}
	if _, err := tm.add(r); err != nil {
		t.Fatal(err)
	}
	step := func(what string, wantIdle []bool, wantStates []string) {
		t.Helper()
		if diff := cmp.Diff(wantIdle, tm.idle("a")); diff != "" {
			t.Errorf("%s: OutputIdle (-want +got):\n%s", what, diff)
		}
		if diff := cmp.Diff(wantStates, tm.outputStates("a")); diff != "" {
			t.Errorf("%s: output states (-want +got):\n%s", what, diff)
		}
	}
	step("no listener", []bool{true, false}, []string{"idle", "active"})
	if diff := cmp.Diff([]string{"5 querier", "3"}, f.opened); diff != "" {
		t.Errorf("tables opened (-want +got):\n%s", diff)
	}

	f.set(3, "239.2.2.2", querier.Filter{Mode: querier.Exclude, Sources: []netip.Addr{netip.MustParseAddr("10.1.0.1")}})
	regateNow(tm)
	step("listener excluding the output's source", []bool{true, false}, []string{"idle", "active"})

	f.set(3, "239.2.2.2", querier.Filter{Mode: querier.Include, Sources: []netip.Addr{netip.MustParseAddr("10.1.0.1")}})
	regateNow(tm)
	step("listener including the output's source", nil, []string{"active", "active"})

	f.set(3, "239.9.9.9", querier.Filter{Mode: querier.Exclude})
	regateNow(tm)
	step("another group joined", nil, []string{"active", "active"})

	f.set(3, "239.2.2.2", querier.Filter{})
	regateNow(tm)
	step("listener left", []bool{true, false}, []string{"idle", "active"})

	rules, outputs := tm.counts()
	if outputs.Idle != 1 || outputs.Active != 1 || rules.Active != 1 {
		t.Errorf("counts: rules %+v, outputs %+v; want 1 active rule, 1 active and 1 idle output", rules, outputs)
	}

	// The output interface is recreated: a fresh table, and the output
	// stays idle on it.
	tm.LinkDeleted(links.Link{Name: "eth1", Index: 3, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 13, Up: true})
	step("recreated", []bool{true, false}, []string{"idle", "active"})
	if _, ok := f.open[3]; ok {
		t.Error("the table of the deleted ifindex 3 is still open")
	}
	if err := tm.remove("a"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{5}, openIndexes(f)); diff != "" {
		t.Errorf("tables open after the rule went (-want +got):\n%s", diff)
	}
}

func openIndexes(f *fakeTables) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for ix := range f.open {
		out = append(out, ix)
	}
	slices.Sort(out)
	return out
}

// TestWhenJoinedWithoutTable: where no table can be opened (no
// CAP_NET_RAW), an output that follows its receivers sends: not knowing
// the listeners must not silence a stream.
func TestWhenJoinedWithoutTable(t *testing.T) {
	tm := newTestMaster(t)
	f := withListeners(tm)
	f.fail[3] = true
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	r := testRule("a", "eth0", "239.1.1.1", 5000, "eth1")
	r.Outputs[0].WhenJoined = true
	if _, err := tm.add(r); err != nil {
		t.Fatal(err)
	}
	if got := tm.idle("a"); got != nil {
		t.Errorf("OutputIdle = %v, want none", got)
	}
	if got := tm.log.String(); !strings.Contains(got, "cannot follow listeners") {
		t.Errorf("log lacks the warning:\n%s", got)
	}
}

// TestListGroups: the ListGroups result lists each table with its groups,
// and an unknown interface is not_found.
func TestListGroups(t *testing.T) {
	tm := newTestMaster(t)
	f := withListeners(tm)
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	if _, err := tm.add(testRule("a", "eth0", "239.1.1.1", 5000, "eth1")); err != nil {
		t.Fatal(err)
	}
	f.set(3, "239.9.9.9", querier.Filter{Mode: querier.Exclude})
	d := &daemon{master: tm.master}
	got := tm.master.listeners.list("", time.Now())
	want := []controlproto.InterfaceGroups{{
		Interface: "eth1", Ifindex: 3,
		Families: []controlproto.FamilyQuerier{{Family: "ipv4", Role: "listener", Groups: 1}, {Family: "ipv6", Role: "listener"}},
		Groups:   []controlproto.GroupListeners{{Group: "239.9.9.9", Mode: "exclude", Version: "IGMPv3"}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListGroups (-want +got):\n%s", diff)
	}
	if resp := d.listGroups("eth9"); resp.Error == nil || resp.Error.Code != controlproto.CodeNotFound {
		t.Errorf("ListGroups eth9 = %+v, want not_found", resp)
	}
}

// TestQuerierSettingsFromConfig: a config file's querier settings add
// interfaces to --querier (turning querying on in an open table, opening
// the table of a querier interface with no output), a new query interval
// reopens the tables, and saves hold the settings as EncodeConfig writes
// them.
func TestQuerierSettingsFromConfig(t *testing.T) {
	tm := newTestMaster(t)
	f := withListeners(tm, "eth3")
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	tm.LinkChanged(links.Link{Name: "eth4", Index: 6, Up: true})
	if _, err := tm.add(testRule("a", "eth0", "239.1.1.1", 5000, "eth1")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"3"}, f.opened); diff != "" {
		t.Errorf("tables opened (-want +got):\n%s", diff)
	}
	v := tm.currentVersion()
	q := ruleset.Querier{Interfaces: []string{"eth1", "eth4"}}
	tm.setQuerierSettings(q)
	if !f.open[3].cfg.Querier || tm.currentVersion() == v {
		t.Errorf("eth1 querier %v, version %d → %d: want querying on and a new version", f.open[3].cfg.Querier, v, tm.currentVersion())
	}
	if diff := cmp.Diff([]string{"3", "6 querier"}, f.opened); diff != "" {
		t.Errorf("tables opened (-want +got):\n%s", diff)
	}
	check := func(what string) {
		t.Helper()
		got := checkEncodedConfig(t, tm, what)
		if c, err := ruleset.DecodeConfig(got); err != nil || !cmp.Equal(c.Querier, tm.config().Querier) {
			t.Errorf("%s: the saved config reads back as %+v, %v", what, c.Querier, err)
		}
	}
	check("querier interfaces")

	q.QueryInterval = "5s"
	tm.setQuerierSettings(q)
	if diff := cmp.Diff([]string{"3", "6 querier", "3 querier", "6 querier"}, sortedTail(f.opened, 2)); diff != "" {
		t.Errorf("tables opened after a new interval (-want +got):\n%s", diff)
	}
	if got := f.open[3].cfg; got.QueryInterval != 5*time.Second || got.QueryResponseInterval != 2500*time.Millisecond {
		t.Errorf("config after a 5 s interval: %+v", got)
	}
	check("query interval")

	tm.setQuerierSettings(ruleset.Querier{})
	if f.open[3].cfg.Querier {
		t.Error("eth1 still queries after its settings went")
	}
	if _, ok := f.open[6]; ok {
		t.Error("eth4, no output and no longer a querier interface, still has a table")
	}
	check("no settings")
}

// sortedTail returns s with its last n entries sorted (tables reopened in
// map order).
func sortedTail(s []string, n int) []string {
	s = slices.Clone(s)
	slices.Sort(s[len(s)-n:])
	return s
}

// TestListenersFollowAddresses: an address change on an interface with a
// listener table makes the table re-read its addresses at once; one on
// another interface does not.
func TestListenersFollowAddresses(t *testing.T) {
	tm := newTestMaster(t)
	f := withListeners(tm, "eth1")
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	tm.syncListeners()
	refreshes := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.open[3].refreshes
	}
	tm.AddrChanged(links.Addr{Index: 3, Prefix: netip.MustParsePrefix("10.1.0.2/24")}, true)
	tm.AddrChanged(links.Addr{Index: 3, Prefix: netip.MustParsePrefix("10.1.0.2/24")}, true) // no change
	tm.AddrChanged(links.Addr{Index: 2, Prefix: netip.MustParsePrefix("10.0.0.2/24")}, true)
	if got := refreshes(); got != 1 {
		t.Errorf("after a new address on eth1: %d refreshes of its table, want 1", got)
	}
	tm.AddrChanged(links.Addr{Index: 3, Prefix: netip.MustParsePrefix("10.1.0.2/24")}, false)
	tm.AddrsListed([]links.Addr{{Index: 3, Prefix: netip.MustParsePrefix("10.1.0.9/24")}})
	if got := refreshes(); got != 3 {
		t.Errorf("after a removal and a re-listing: %d refreshes, want 3", got)
	}
}

// TestReportIdleOutput: GetStats shows an output that follows its
// receivers and has none as idle, and counts it idle in the totals; its
// sibling that always sends shows no state and counts active.
func TestReportIdleOutput(t *testing.T) {
	td := startTestDaemon(t)
	withListeners(td.testMaster)
	r := testRule("a", "eth0", "239.1.1.1", 5000, "eth1")
	r.Outputs = append(r.Outputs, ruleset.Output{Interface: "eth1", Group: "239.2.2.2", Port: 6000, WhenJoined: true})
	if _, err := td.add(r); err != nil {
		t.Fatal(err)
	}
	rep := td.d.Report()
	var states []string
	for _, o := range rep.Rules[0].Outputs {
		states = append(states, o.State)
	}
	if diff := cmp.Diff([]string{"", "idle"}, states); diff != "" {
		t.Errorf("outputs[].state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stats.StateCounts{Active: 1, Idle: 1}, rep.Totals.Outputs); diff != "" {
		t.Errorf("totals.outputs (-want +got):\n%s", diff)
	}
}
