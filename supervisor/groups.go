package supervisor

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/querier"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/supervisor/links"
)

// groupTable is the IGMP/MLD side of one interface (querier.Interface):
// the listener table, and the querier when turned on. A fake stands in for
// it in unit tests.
type groupTable interface {
	Allowed(group, source netip.Addr) bool
	Groups() []querier.Group
	Status() (st [2]querier.Status, received uint64, drops querier.Drops)
	SetQuerier(on bool)
	// RefreshAddresses re-reads the interface's addresses, the source of
	// its queries and its bid in the querier election.
	RefreshAddresses()
	Close() error
}

// openGroupTable starts IGMP/MLD on the interface with ifindex; events
// gets the table's changes from the table's own goroutine.
type openGroupTable func(ifindex int, cfg *querier.Config, events func(querier.Event), log *slog.Logger) (groupTable, error)

// listenerConfig is what the listener tables are built from.
type listenerConfig struct {
	Open openGroupTable
	Log  *slog.Logger
	// Queriers are the interfaces of --querier: there the relay also
	// queries, when it wins the election; on every other interface it
	// only listens.
	Queriers []string
	// QueryInterval is --query-interval; 0 = querier.DefaultQueryInterval.
	QueryInterval time.Duration
}

// listeners keeps a listener table on every output interface of the rules
// and every --querier interface that exists, opened and closed as the
// master's view of rules and links changes (sync), and tells the master
// which interfaces' tables changed (run), so that it re-decides the
// outputs that follow their receivers (when_joined).
//
// Lock order: master.mu, then listeners.mu, then the table's own lock. The
// tables' events take neither: they only mark the interface changed, so a
// table can be closed under both locks while its goroutine delivers.
type listeners struct {
	open openGroupTable
	log  *slog.Logger
	// flagQueriers and flagInterval are --querier and --query-interval;
	// queriers and cfg what is in effect, with the config file's
	// settings added (configure).
	flagQueriers []string
	flagInterval time.Duration
	queriers     map[string]bool
	cfg          querier.Config

	mu      sync.Mutex // guards byIndex and failed
	byIndex map[int]*listening
	// failed holds the interfaces where a table could not be opened, so
	// that each failure is logged once per ifindex.
	failed map[int]bool

	changedMu sync.Mutex
	changed   map[int]bool  // ifindexes whose listeners changed since run last looked
	wake      chan struct{} // capacity 1: something is in changed
}

// listening is the listener table of one interface.
type listening struct {
	name    string
	ifindex int
	querier bool
	t       groupTable
}

func newListeners(c listenerConfig) *listeners {
	l := &listeners{
		open: c.Open, log: c.Log, flagQueriers: c.Queriers, flagInterval: c.QueryInterval,
		byIndex: map[int]*listening{}, failed: map[int]bool{},
		changed: map[int]bool{}, wake: make(chan struct{}, 1),
	}
	l.queriers, l.cfg = l.settings(ruleset.Querier{})
	return l
}

// settings returns the querier interfaces and the protocol configuration
// in effect with the config file's settings q.
func (l *listeners) settings(q ruleset.Querier) (map[string]bool, querier.Config) {
	names := map[string]bool{}
	for _, name := range append(slices.Clone(l.flagQueriers), q.Interfaces...) {
		names[name] = true
	}
	cfg := querier.Config{QueryInterval: cmp.Or(q.Interval(), l.flagInterval)}
	if qi := cfg.QueryInterval; qi > 0 && qi <= querier.DefaultQueryResponseInterval {
		// Short intervals (tests, labs): the response interval must stay
		// below the query interval.
		cfg.QueryResponseInterval = qi / 2
	}
	return names, cfg
}

// configure applies the config file's querier settings: tables whose
// interface became or stopped being a querier interface turn querying on
// or off and keep their listeners; a new query interval reopens every
// table (its listeners are learnt again from the next reports). The
// caller then syncs, to open the tables of new querier interfaces.
func (l *listeners) configure(q ruleset.Querier) {
	names, cfg := l.settings(q)
	l.mu.Lock()
	defer l.mu.Unlock()
	reopen := cfg != l.cfg
	l.queriers, l.cfg = names, cfg
	for _, ls := range l.byIndex {
		switch {
		case reopen:
			l.log.Info("IGMP/MLD restarted with a new query interval", "interface", ls.name,
				"query_interval", cmp.Or(cfg.QueryInterval, querier.DefaultQueryInterval))
			l.closeLocked(ls)
			l.openLocked(ls.name, ls.ifindex)
		case ls.querier != names[ls.name]:
			ls.querier = names[ls.name]
			ls.t.SetQuerier(ls.querier)
			l.log.Info("IGMP/MLD querier", "interface", ls.name, "on", ls.querier)
		}
	}
}

// checkQueryInterval reports whether d can be a query interval, with the
// response interval newListeners derives for it.
func checkQueryInterval(d time.Duration) error {
	_, err := querier.NewRouter(querier.IPv4, 1, &newListeners(listenerConfig{QueryInterval: d}).cfg, nil, nil)
	return err
}

// sync makes the set of open tables want: ifindex → interface name. It
// opens what is missing and closes what is no longer wanted (a recreated
// interface, with a new ifindex, gets a fresh, empty table).
func (l *listeners) sync(want map[int]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ix, ls := range l.byIndex {
		if name, ok := want[ix]; ok {
			ls.name = name // renamed: same link, same table
			continue
		}
		l.closeLocked(ls)
	}
	for ix := range l.failed {
		if _, ok := want[ix]; !ok {
			delete(l.failed, ix)
		}
	}
	for _, ix := range slices.Sorted(maps.Keys(want)) {
		if _, ok := l.byIndex[ix]; !ok && !l.failed[ix] {
			l.openLocked(want[ix], ix)
		}
	}
}

// openLocked opens the table of the interface; nil when it cannot (logged
// once per ifindex).
func (l *listeners) openLocked(name string, ifindex int) *listening {
	cfg := l.cfg
	cfg.Querier = l.queriers[name]
	t, err := l.open(ifindex, &cfg, func(ev querier.Event) { l.event(name, ev) }, l.log.With("interface", name))
	if err != nil {
		l.failed[ifindex] = true
		l.log.Warn("cannot follow listeners; outputs there that follow their receivers send always",
			"interface", name, "ifindex", ifindex, "err", err)
		return nil
	}
	ls := &listening{name: name, ifindex: ifindex, querier: cfg.Querier, t: t}
	l.byIndex[ifindex] = ls
	return ls
}

func (l *listeners) closeLocked(ls *listening) {
	if err := ls.t.Close(); err != nil {
		l.log.Debug("stop IGMP/MLD", "interface", ls.name, "err", err)
	}
	delete(l.byIndex, ls.ifindex)
}

// close closes every table (shutdown).
func (l *listeners) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ls := range l.byIndex {
		l.closeLocked(ls)
	}
}

// allowed reports whether the listeners of group on the interface want
// traffic from source (invalid: any source). An interface without a table
// (it could not be opened) allows everything: not knowing the listeners
// must not silence a stream. The table is opened here if it is not yet, so
// that an output on an interface new to the rules starts idle.
func (l *listeners) allowed(name string, ifindex int, group, source netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.byIndex[ifindex]
	if ls == nil && !l.failed[ifindex] {
		ls = l.openLocked(name, ifindex)
	}
	return ls == nil || ls.t.Allowed(group, source)
}

// readdress has the tables of these ifindexes, whose addresses changed,
// re-read them at once rather than at their next periodic look: a querier
// then queries from its new address, or stops with none, without delay.
// Safe on nil (no listener tables).
func (l *listeners) readdress(ifindexes []int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ix := range ifindexes {
		if ls := l.byIndex[ix]; ls != nil {
			ls.t.RefreshAddresses()
		}
	}
}

// event runs on a table's goroutine: it logs joins and leaves and marks the
// interface changed. It must not block (reports wait meanwhile), so it
// takes no lock the master holds.
func (l *listeners) event(name string, ev querier.Event) {
	switch ev.Kind {
	case querier.Joined:
		l.log.Info("listener joined", "interface", name, "group", ev.Group, "reporter", ev.Reporter)
	case querier.Left:
		l.log.Info("listener left", "interface", name, "group", ev.Group)
	case querier.FilterChanged:
		l.log.Debug("listener filter changed", "interface", name, "group", ev.Group,
			"mode", ev.Filter.Mode, "sources", ev.Filter.Sources)
	default:
		return
	}
	l.changedMu.Lock()
	l.changed[ev.Ifindex] = true
	l.changedMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run hands the master the interfaces whose listeners changed, until ctx
// ends.
func (l *listeners) run(ctx context.Context, m *master) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		l.changedMu.Lock()
		ixs := slices.Sorted(maps.Keys(l.changed))
		clear(l.changed)
		l.changedMu.Unlock()
		m.regate(ixs)
	}
}

// list returns the ListGroups result: every table, or the one of the
// interface named iface, in name order. Safe on nil (no listener tables):
// none.
func (l *listeners) list(iface string, now time.Time) []controlproto.InterfaceGroups {
	if l == nil {
		return []controlproto.InterfaceGroups{}
	}
	l.mu.Lock()
	tables := make([]*listening, 0, len(l.byIndex))
	for _, ls := range l.byIndex {
		if iface == "" || ls.name == iface {
			tables = append(tables, ls)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(tables, func(a, b *listening) int { return cmp.Compare(a.name, b.name) })
	out := make([]controlproto.InterfaceGroups, 0, len(tables))
	for _, ls := range tables {
		out = append(out, describeTable(ls, now))
	}
	return out
}

// describeTable is one interface of ListGroups.
func describeTable(ls *listening, now time.Time) controlproto.InterfaceGroups {
	ig := controlproto.InterfaceGroups{Interface: ls.name, Ifindex: ls.ifindex, Querier: ls.querier,
		Groups: []controlproto.GroupListeners{}}
	st, _, _ := ls.t.Status()
	for _, s := range st {
		fq := controlproto.FamilyQuerier{Family: strings.ToLower(s.Family.String()), Role: s.Role.String(),
			Address: addrText(s.Address), Querier: addrText(s.Querier), Groups: s.Groups,
			QueriesSent: s.Counters.QueriesSent, QueriesReceived: s.Counters.QueriesReceived,
			Reports: s.Counters.Reports, Leaves: s.Counters.Leaves, GroupsRefused: s.Counters.GroupsRefused}
		if s.Role == querier.NonQuerier && !s.QuerierExpires.IsZero() {
			fq.QuerierExpiresMs = max(0, s.QuerierExpires.Sub(now).Milliseconds())
		}
		ig.Families = append(ig.Families, fq)
	}
	for _, g := range ls.t.Groups() {
		gl := controlproto.GroupListeners{Group: g.Group.String(), Mode: strings.ToLower(g.Filter.Mode.String()),
			Version: g.Compat.String(), Reporter: addrText(g.Reporter),
			ExpiresMs: max(0, g.Expires.Sub(now).Milliseconds())}
		for _, s := range g.Filter.Sources {
			gl.Sources = append(gl.Sources, s.String())
		}
		ig.Groups = append(ig.Groups, gl)
	}
	return ig
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// regate re-decides the outputs on the interfaces with these ifindexes,
// whose listeners changed: those that follow their receivers turn idle or
// active, and the workers get the rules again.
func (m *master) regate(ifindexes []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	affected := map[string]*ruleEntry{}
	for _, ix := range ifindexes {
		l, ok := m.links.ByIndex(ix)
		if !ok {
			continue
		}
		for id, e := range m.byOutput[l.Name] {
			if slices.ContainsFunc(e.rule.Outputs, func(o ruleset.Output) bool { return o.WhenJoined && o.Interface == l.Name }) {
				affected[id] = e
			}
		}
	}
	var b batch
	for _, id := range slices.Sorted(maps.Keys(affected)) {
		m.reconcile(affected[id], &b)
	}
	m.flush(&b)
}

// outputAllowed reports whether output i of e, on link out, may send: it
// does not follow its receivers, or a listener of its group wants its
// source there. The source receivers see is the output's source address,
// or for a transparent output the input's; an output without one asks
// for any listener (the kernel picks its source).
func (m *master) outputAllowed(e *ruleEntry, i int, out links.Link) bool {
	o := e.rule.Outputs[i]
	if !o.WhenJoined || m.listeners == nil {
		return true
	}
	var src netip.Addr
	switch {
	case o.Source != "":
		src = netip.MustParseAddr(o.Source) // valid: the rule passed Validate
	case o.PreserveSource:
		src = e.src
	}
	return m.listeners.allowed(out.Name, out.Index, netip.MustParseAddr(o.Group), src)
}

// syncListeners opens a listener table on every output interface and
// --querier interface that exists and closes the others. (A table an
// output that follows its receivers needs is opened already, by
// outputAllowed.) The caller holds mu.
func (m *master) syncListeners() {
	if m.listeners == nil {
		return
	}
	want := map[int]string{}
	for name := range m.byOutput {
		if l, ok := m.links.Lookup(name); ok {
			want[l.Index] = name
		}
	}
	for name := range m.listeners.queriers {
		if l, ok := m.links.Lookup(name); ok {
			want[l.Index] = name
		}
	}
	m.listeners.sync(want)
}

// setQuerierSettings makes q, a config file's querier settings, those in
// effect (start, reload, LoadConfig); a change counts as a change of the
// config, which a save then holds.
func (m *master) setQuerierSettings(q ruleset.Querier) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(q.Interfaces, m.querier.Interfaces) && q.QueryInterval == m.querier.QueryInterval {
		return
	}
	m.querier = q
	m.version++
	if m.listeners != nil {
		m.listeners.configure(q)
		m.syncListeners()
	}
}

// withQuerier returns the config file data, as joinConfig makes it, with
// the querier settings q inserted as ruleset.EncodeConfig places them.
func withQuerier(data []byte, q ruleset.Querier) ([]byte, error) {
	if q.Interfaces == nil && q.QueryInterval == "" {
		return data, nil
	}
	head, err := ruleset.EncodeConfig(ruleset.Config{Querier: q})
	if err != nil {
		return nil, err
	}
	// head is `{ "querier": {…}, "rules": [] }` indented; data starts
	// `{\n  "rules"`.
	cut := bytes.LastIndex(head, []byte(`"rules"`))
	const open = "{\n  "
	if cut < 0 || !bytes.HasPrefix(data, []byte(open)) {
		return nil, fmt.Errorf("encode config: querier settings %+v do not fit %q", q, head)
	}
	return append(head[:cut:cut], data[len(open):]...), nil
}

// Groups is the ListGroups result for every interface (what the listener
// metrics show).
func (d *daemon) Groups() []controlproto.InterfaceGroups {
	return d.master.listeners.list("", time.Now())
}

// listGroups is the ListGroups result; an interface named but not
// listened on is not_found.
func (d *daemon) listGroups(iface string) controlproto.Response {
	list := d.master.listeners.list(iface, time.Now())
	if iface != "" && len(list) == 0 {
		return controlproto.Fail(controlproto.CodeNotFound,
			"no listener table on %s: it is no output interface of a rule, no --querier interface, or does not exist", iface)
	}
	return controlproto.OK(list)
}

// Listener metrics (docs/stats.md).
var (
	descListenerGroups = prometheus.NewDesc("mcr_listener_groups",
		"Groups with listeners on the interface (IGMP for ipv4, MLD for ipv6), from the relay's listener table.",
		[]string{"interface", "family"}, nil)
	descQuerierActive = prometheus.NewDesc("mcr_querier_active",
		"1 while the relay is the elected querier of the interface and family, else 0.",
		[]string{"interface", "family"}, nil)
	descQueriesSent = prometheus.NewDesc("mcr_querier_queries_sent_total",
		"IGMP/MLD queries the relay sent on the interface, general and specific.", []string{"interface", "family"}, nil)
	descQueriesReceived = prometheus.NewDesc("mcr_querier_queries_received_total",
		"IGMP/MLD queries heard from other routers on the interface.", []string{"interface", "family"}, nil)
	descListenerReports = prometheus.NewDesc("mcr_listener_reports_total",
		"IGMP/MLD membership reports (each IGMPv3/MLDv2 record counts) heard on the interface.",
		[]string{"interface", "family"}, nil)
	descListenerLeaves = prometheus.NewDesc("mcr_listener_leaves_total",
		"IGMPv2 leaves and MLDv1 dones heard on the interface.", []string{"interface", "family"}, nil)
)

// collectGroups sends the listener metrics of the ListGroups result.
func collectGroups(ch chan<- prometheus.Metric, groups []controlproto.InterfaceGroups) {
	for _, ig := range groups {
		for _, f := range ig.Families {
			ch <- gauge(descListenerGroups, float64(f.Groups), ig.Interface, f.Family)
			ch <- gauge(descQuerierActive, boolValue(f.Role == querier.Querier.String()), ig.Interface, f.Family)
			ch <- counter(descQueriesSent, f.QueriesSent, ig.Interface, f.Family)
			ch <- counter(descQueriesReceived, f.QueriesReceived, ig.Interface, f.Family)
			ch <- counter(descListenerReports, f.Reports, ig.Interface, f.Family)
			ch <- counter(descListenerLeaves, f.Leaves, ig.Interface, f.Family)
		}
	}
}
