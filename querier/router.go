package querier

import (
	"net/netip"
	"slices"
	"time"
)

// Sender puts a query on the link: m from src to dst. It must not keep m
// or its slices after it returns. The Linux sender (Interface) encodes and
// writes it on a raw socket; tests record it.
type Sender interface {
	SendQuery(m *Message, src, dst netip.Addr) error
}

// Counters count what a Router saw and did. They only grow.
type Counters struct {
	QueriesSent     uint64 // queries put on the link, general and specific
	SendErrors      uint64 // queries the Sender failed to send
	QueriesReceived uint64 // queries from other routers
	Reports         uint64 // reports: IGMPv1/v2, MLDv1, and each IGMPv3/MLDv2 record
	Leaves          uint64 // IGMPv2 leaves and MLDv1 dones
	GroupsRefused   uint64 // groups not added: the table held MaxGroups
	SourcesRefused  uint64 // sources cut from a list longer than MaxSources
}

// Status is a snapshot of a Router's election state and counters.
type Status struct {
	Family Family
	Role   Role
	// Address is ours: the source of our queries.
	Address netip.Addr
	// Querier is the querier on the link: ours when Role is Querier,
	// else the lowest-addressed other querier heard in the last Other
	// Querier Present Interval (invalid when none).
	Querier netip.Addr
	// QuerierExpires is when the other querier counts as gone unless
	// heard again (zero when Role is Querier).
	QuerierExpires time.Time
	// NextQuery is when our next general query is due (Querier only).
	NextQuery time.Time
	Groups    int
	Counters  Counters
}

// Router is the router side of IGMP (Family IPv4) or MLD (IPv6) on one
// interface: the listener table, its timers and, when Config.Querier is
// on, the querier with its election. It does no I/O and reads no clock:
// every call takes the current time, queries go to the Sender, changes to
// the event function, and NextDeadline says when it needs Advance next.
// That makes it deterministic under test, and it needs no goroutine or
// runtime timer per group.
//
// A Router is not safe for concurrent use.
type Router struct {
	fam     Family
	ifindex int
	cfg     Config
	proto   Protocol // the version of our queries
	send    Sender
	emit    func(Event)

	groups map[netip.Addr]*group
	heap   deadlines
	el     election
	now    time.Time
	cnt    Counters

	// Scratch space reused across calls, so that processing a report
	// allocates only when the table grows.
	recSrcs    []netip.Addr
	mergeBuf   []source
	before     []netip.Addr
	after      []netip.Addr
	querySrcs  []netip.Addr
	suppressed []netip.Addr
	query      Message
}

// NewRouter returns a Router for family fam on the interface with ifindex
// (used only to label events). send receives the queries it sends; emit,
// which may be nil, the events, synchronously: emit must not call back into
// the Router. The router starts as a Listener, or with Config.Querier as
// NoAddress until SetAddress gives it an address.
func NewRouter(fam Family, ifindex int, cfg *Config, send Sender, emit func(Event)) (*Router, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if emit == nil {
		emit = func(Event) {}
	}
	r := &Router{fam: fam, ifindex: ifindex, cfg: c, send: send, emit: emit, groups: map[netip.Addr]*group{}}
	r.proto = c.IGMPVersion
	if fam == IPv6 {
		r.proto = c.MLDVersion
	}
	r.el.role = Listener
	if c.Querier {
		r.el.role = NoAddress
	}
	return r, nil
}

// timing returns the variables the timers use now: ours while we query or
// when no other querier told us its own.
func (r *Router) timing() timing {
	t := timing{
		robustness: r.cfg.Robustness,
		qi:         r.cfg.QueryInterval,
		qri:        r.cfg.QueryResponseInterval,
		lmqi:       r.cfg.LastMemberQueryInterval,
		lmqc:       r.cfg.LastMemberQueryCount,
	}
	if r.el.role != Querier {
		if r.el.otherQRV > 0 {
			t.robustness = r.el.otherQRV
		}
		if r.el.otherQQI > 0 {
			t.qi = r.el.otherQQI
		}
	}
	return t
}

// Receive processes a message from src, received at now. Messages of the
// other family are ignored. It applies any timers due by now first.
func (r *Router) Receive(now time.Time, src netip.Addr, m *Message) {
	if m.Protocol.Family() != r.fam {
		return
	}
	r.Advance(now)
	switch m.Kind {
	case KindQuery:
		r.receiveQuery(src, m)
	case KindReport:
		r.cnt.Reports++
		r.olderReport(src, m)
	case KindLeave:
		r.cnt.Leaves++
		if g := r.groups[m.Group]; g != nil && g.compat(r.proto) != IGMPv1 {
			r.record(src, ToInclude, m.Group, nil)
		}
	case KindRecords:
		for i := range m.Records {
			r.cnt.Reports++
			rec := &m.Records[i]
			r.record(src, rec.Type, rec.Group, rec.Sources)
		}
	}
}

// olderReport handles an IGMPv1/v2 or MLDv1 report: IS_EX({}) for the group
// plus its Older Host Present timer (RFC 3376 §7.3.2, RFC 3810 §8.3.2).
func (r *Router) olderReport(src netip.Addr, m *Message) {
	r.record(src, IsExclude, m.Group, nil)
	g := r.groups[m.Group]
	if g == nil {
		return
	}
	until := r.now.Add(r.timing().gmi())
	if m.Protocol == IGMPv1 {
		g.v1Host = until
	} else {
		g.v2Host = until
	}
	r.reschedule(g)
}

// Advance applies every timer due by now: expiring sources and groups,
// retransmitting queries, the querier's general queries and the other
// querier's timeout. Time never goes back: an earlier now than a previous
// call's counts as that call's.
func (r *Router) Advance(now time.Time) {
	if now.Before(r.now) {
		now = r.now
	}
	r.now = now
	for len(r.heap) > 0 && !r.heap[0].due.After(now) {
		r.expire(r.heap[0])
	}
	r.advanceElection()
}

// NextDeadline returns when the router next needs Advance; the zero time
// when nothing is scheduled.
func (r *Router) NextDeadline() time.Time {
	var due time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	if len(r.heap) > 0 {
		earliest(r.heap[0].due)
	}
	earliest(r.el.otherUntil)
	if r.el.role == Querier {
		earliest(r.el.nextQuery)
	}
	return due
}

// Allowed reports whether the listeners of group on this interface want
// traffic from source: the group is in the table and its filter allows
// source. Pass the zero netip.Addr for "from any source": true when the
// group has any listener. The answer reflects the table as of the last
// call that took a time.
func (r *Router) Allowed(group, source netip.Addr) bool {
	g := r.groups[group]
	return g != nil && g.allows(source)
}

// Lookup returns a snapshot of group, if it is in the table.
func (r *Router) Lookup(group netip.Addr) (Group, bool) {
	g := r.groups[group]
	if g == nil {
		return Group{}, false
	}
	return g.snapshot(r.proto), true
}

// Groups returns a snapshot of the table, sorted by group address.
func (r *Router) Groups() []Group {
	out := make([]Group, 0, len(r.groups))
	for _, g := range r.groups {
		out = append(out, g.snapshot(r.proto))
	}
	slices.SortFunc(out, func(a, b Group) int { return a.Group.Compare(b.Group) })
	return out
}

// Len returns the number of groups in the table.
func (r *Router) Len() int { return len(r.groups) }

// Status returns the router's election state and counters.
func (r *Router) Status() Status {
	s := Status{
		Family:   r.fam,
		Role:     r.el.role,
		Address:  r.el.self,
		Groups:   len(r.groups),
		Counters: r.cnt,
	}
	if r.el.role == Querier {
		s.Querier, s.NextQuery = r.el.self, r.el.nextQuery
	} else if !r.el.otherUntil.IsZero() {
		s.Querier, s.QuerierExpires = r.el.other, r.el.otherUntil
	}
	return s
}

// reschedule recomputes g's next deadline and its place in the heap.
func (r *Router) reschedule(g *group) {
	g.updateDue()
	r.heap.fix(g)
}

// sendQuery sends the query in r.query to dst, counting the outcome.
func (r *Router) sendQuery(dst netip.Addr) {
	if err := r.send.SendQuery(&r.query, r.el.self, dst); err != nil {
		r.cnt.SendErrors++
		return
	}
	r.cnt.QueriesSent++
}

// newQuery prepares r.query as a query for group (unspecified: general)
// with Max Resp Time maxResp, in our version.
func (r *Router) newQuery(group netip.Addr, maxResp time.Duration) {
	r.query.reset()
	r.query.Kind, r.query.Protocol, r.query.Group, r.query.MaxResp = KindQuery, r.proto, group, maxResp
	if r.proto.SourceFiltering() {
		r.query.QRV = uint8(min(r.cfg.Robustness, 8) & 7)
		r.query.QQI = r.cfg.QueryInterval
	}
}
