package querier

import (
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Role is the router's part in the querier election (RFC 3376 §6.6.2,
// RFC 3810 §7.6.2). The zero value is invalid.
//
//	                SetAddress(valid)
//	NoAddress ─────────────────────────► Querier ◄──┐
//	    ▲        SetAddress(invalid)       │        │ Other Querier Present
//	    └──────────────────────────────────┤        │ timer runs out
//	                                       ▼        │
//	               query from a lower address    NonQuerier
//
//	Listener: Config.Querier off; never queries.
type Role uint8

const (
	// Listener: querying is off; the router only listens.
	Listener Role = iota + 1
	// Querier: the router sends the link's queries.
	Querier
	// NonQuerier: a querier with a lower address is on the link; the
	// router is silent until that querier has not been heard for the
	// Other Querier Present Interval.
	NonQuerier
	// NoAddress: querying is on but the interface has no address to
	// query from (IPv4: none; IPv6: no link-local address), so the
	// router cannot take part in the election and stays silent.
	NoAddress
)

// String returns the role's name in lowercase, as logs use it.
func (r Role) String() string {
	switch r {
	case Listener:
		return "listener"
	case Querier:
		return "querier"
	case NonQuerier:
		return "non-querier"
	case NoAddress:
		return "no address"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// election is the querier election's state.
type election struct {
	role Role
	// self is our address on the link: the source of our queries and our
	// bid in the election.
	self netip.Addr
	// other is the lowest-addressed other querier heard, until
	// otherUntil (the Other Querier Present timer); its QRV and QQI, when
	// it sent them, are adopted for the timers while we do not query.
	other      netip.Addr
	otherUntil time.Time
	otherQRV   int
	otherQQI   time.Duration
	// nextQuery is when the next general query is due (Querier only);
	// startupLeft counts the startup queries still to send after it.
	nextQuery   time.Time
	startupLeft int
}

// beats reports whether a query from src wins the election against self:
// the lower address wins (IPv4 compared as a number, IPv6 byte by byte,
// which is the same order). A query from the unspecified address takes no
// part: it comes from a snooping switch's stand-in querier that has no
// address of its own, as a Linux bridge sends by default
// (mcast_query_use_ifaddr 0). The bridge defers to any other querier it
// hears (br_multicast_select_querier), so if we deferred to it too, both
// would fall silent and the link would lose its queries.
func beats(src, self netip.Addr) bool {
	if src.IsUnspecified() {
		return false
	}
	return !self.IsValid() || src.Less(self)
}

// SetAddress tells the router its address on the link, the source of its
// queries: for IPv4 the interface's primary address, for IPv6 a link-local
// one. An invalid address, or one of the wrong kind, means there is none:
// a router with Config.Querier then waits in NoAddress. A router given its
// first address starts querying (startup queries), unless a lower-addressed
// querier is already known.
func (r *Router) SetAddress(now time.Time, a netip.Addr) {
	r.Advance(now)
	if !usable(r.fam, a) {
		a = netip.Addr{}
	}
	if a == r.el.self {
		return
	}
	r.el.self = a
	switch {
	case r.el.role == Listener:
	case !a.IsValid():
		r.setRole(NoAddress)
	case r.el.role == NoAddress && r.otherPresent() && beats(r.el.other, a):
		r.setRole(NonQuerier)
	case r.el.role == NoAddress:
		r.becomeQuerier()
	case r.el.role == Querier && r.otherPresent() && beats(r.el.other, a):
		r.setRole(NonQuerier)
	}
}

// SetQuerier turns querying on or off, as Config.Querier does at start.
// The listener table stays.
func (r *Router) SetQuerier(now time.Time, on bool) {
	r.Advance(now)
	r.cfg.Querier = on
	switch {
	case !on && r.el.role != Listener:
		r.setRole(Listener)
	case !on:
	case r.el.role != Listener:
	case !r.el.self.IsValid():
		r.setRole(NoAddress)
	case r.otherPresent() && beats(r.el.other, r.el.self):
		r.setRole(NonQuerier)
	default:
		r.becomeQuerier()
	}
}

// usable reports whether a can be our query source: IPv4, or IPv6
// link-local (RFC 3810 §5.1.14: hosts drop queries from other sources).
func usable(f Family, a netip.Addr) bool {
	if f == IPv4 {
		return a.Is4() && !a.IsUnspecified()
	}
	return a.Is6() && a.IsLinkLocalUnicast()
}

// otherPresent reports whether another querier was heard recently.
func (r *Router) otherPresent() bool { return !r.el.otherUntil.IsZero() }

func (r *Router) setRole(role Role) {
	if r.el.role == role {
		return
	}
	r.el.role = role
	r.roleEvent()
}

func (r *Router) roleEvent() {
	ev := Event{Kind: RoleChanged, Ifindex: r.ifindex, Family: r.fam, Role: r.el.role}
	if r.el.role == Querier {
		ev.Querier = r.el.self
	} else if r.otherPresent() {
		ev.Querier = r.el.other
	}
	r.emit(ev)
}

// becomeQuerier makes the router the querier: it sends a general query at
// once, then StartupQueryCount-1 more StartupQueryInterval apart, then one
// every QueryInterval (RFC 3376 §8.6, §8.7). It does so at start and when
// it takes over from a querier that went silent.
func (r *Router) becomeQuerier() {
	r.el.nextQuery = r.now
	r.el.startupLeft = r.cfg.StartupQueryCount
	r.setRole(Querier)
	r.advanceElection()
}

// advanceElection runs the election's timers: the other querier's timeout
// and our general queries.
func (r *Router) advanceElection() {
	now := r.now
	if r.otherPresent() && !r.el.otherUntil.After(now) {
		r.el.other, r.el.otherUntil, r.el.otherQRV, r.el.otherQQI = netip.Addr{}, time.Time{}, 0, 0
		if r.el.role == NonQuerier {
			r.becomeQuerier()
			return
		}
		r.roleEvent()
	}
	if r.el.role != Querier || r.el.nextQuery.After(now) {
		return
	}
	r.newQuery(unspecified(r.fam), r.cfg.QueryResponseInterval)
	r.sendQuery(allSystems(r.fam))
	if r.el.startupLeft > 1 {
		r.el.startupLeft--
		r.el.nextQuery = now.Add(r.cfg.StartupQueryInterval)
	} else {
		r.el.startupLeft = 0
		r.el.nextQuery = now.Add(r.cfg.QueryInterval)
	}
}

// receiveQuery handles a query from another router: the election, then
// the timer updates every router makes for a query without the S flag
// (RFC 3376 §6.6.1).
func (r *Router) receiveQuery(src netip.Addr, m *Message) {
	if src == r.el.self {
		return // our own, looped back
	}
	r.cnt.QueriesReceived++
	r.elect(src, m)
	if !m.Suppress && !m.Group.IsUnspecified() {
		r.lowerTimers(m)
	}
}

// elect applies a query from src to the election. A querier that hears a
// lower address falls silent (NonQuerier) for the Other Querier Present
// Interval, renewed by each query of the winner. Routers that do not query
// remember the lowest querier heard, to show it.
func (r *Router) elect(src netip.Addr, m *Message) {
	if src.IsUnspecified() {
		return
	}
	contending := r.el.role == Querier || r.el.role == NonQuerier
	if contending && !beats(src, r.el.self) {
		return // we win; it will fall silent when it hears us
	}
	if r.otherPresent() && r.el.other.Less(src) {
		return // a lower querier is still present: it is the one
	}
	changed := r.el.other != src
	r.el.other = src
	if m.QRV > 0 {
		r.el.otherQRV = int(m.QRV)
	}
	if m.QQI > 0 {
		r.el.otherQQI = m.QQI
	}
	if r.el.role == Querier {
		r.el.role = NonQuerier
		changed = true
	}
	r.el.otherUntil = r.now.Add(r.timing().oqpi())
	if changed {
		r.roleEvent()
	}
}

// lowerTimers lowers the timers a group-specific or group-and-source-
// specific query asks about to the Last Member Query Time (RFC 3376
// §6.6.1): the querier's Last Member Query Interval is the query's Max
// Resp Time, its count the query's QRV (or ours when it sent none).
func (r *Router) lowerTimers(m *Message) {
	g := r.groups[m.Group]
	if g == nil || m.MaxResp == 0 {
		return
	}
	count := int(m.QRV)
	if count == 0 {
		count = r.timing().robustness
	}
	lmqt := r.now.Add(time.Duration(count) * m.MaxResp)
	if len(m.Sources) == 0 {
		if g.mode == Exclude && g.timer.After(lmqt) {
			g.timer = lmqt
		}
	} else {
		for _, a := range m.Sources {
			i, found := slices.BinarySearchFunc(g.srcs, a, func(s source, a netip.Addr) int { return s.addr.Compare(a) })
			if found && g.srcs[i].timer.After(lmqt) {
				g.srcs[i].timer = lmqt
			}
		}
	}
	r.reschedule(g)
}

// unspecified returns 0.0.0.0 or ::, the group of a general query.
func unspecified(f Family) netip.Addr {
	if f == IPv6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// allSystems returns where general queries go: 224.0.0.1 or ff02::1.
func allSystems(f Family) netip.Addr {
	if f == IPv6 {
		return allNodes
	}
	return allHosts
}
