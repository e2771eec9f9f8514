package querier

import (
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// FilterMode is a group's filter mode (RFC 3376 §6.2.1). The zero value is
// invalid.
type FilterMode uint8

const (
	// Include: listeners want only the sources listed.
	Include FilterMode = iota + 1
	// Exclude: listeners want every source but those listed.
	Exclude
)

// String returns "INCLUDE" or "EXCLUDE".
func (m FilterMode) String() string {
	switch m {
	case Include:
		return "INCLUDE"
	case Exclude:
		return "EXCLUDE"
	}
	return "FilterMode(" + strconv.Itoa(int(m)) + ")"
}

// Filter is what the listeners of a group want, as a forwarding decision
// (RFC 3376 §6.3): INCLUDE{S1,S2} allows only S1 and S2; EXCLUDE{S} allows
// every source but S; EXCLUDE{} allows every source. Sources are sorted.
type Filter struct {
	Mode    FilterMode
	Sources []netip.Addr
}

// Allows reports whether traffic from source should reach the group's
// listeners. An invalid source (the zero netip.Addr) stands for "any
// source": it is allowed unless the filter is INCLUDE{}, which no group in
// the table has.
func (f Filter) Allows(source netip.Addr) bool {
	if !source.IsValid() {
		return f.Mode == Exclude || len(f.Sources) > 0
	}
	_, found := slices.BinarySearchFunc(f.Sources, source, netip.Addr.Compare)
	return found == (f.Mode == Include)
}

// Equal reports whether f and g allow the same sources.
func (f Filter) Equal(g Filter) bool { return f.Mode == g.Mode && slices.Equal(f.Sources, g.Sources) }

// Group is a snapshot of one group of the listener table.
type Group struct {
	Group netip.Addr
	// Filter is what the group's listeners want.
	Filter Filter
	// Compat is the group's compatibility mode: the oldest protocol
	// version a listener reported it with in the last Older Host Present
	// Interval (IGMPv1 and IGMPv2 hosts do not know source filters).
	Compat Protocol
	// Reporter is the source address of the last report for the group.
	Reporter netip.Addr
	// Expires is when the group leaves the table unless a listener
	// reports again: the later of its group timer and its source timers.
	Expires time.Time
	// Sources are the group's source records (RFC 3376 §6.2.3): in
	// INCLUDE mode the sources wanted; in EXCLUDE mode those asked for
	// by name (Expires set) and those no listener wants (Expires zero).
	Sources []SourceTimer
}

// SourceTimer is one source record of a group and when its timer runs out;
// zero for a source in EXCLUDE mode that no listener wants.
type SourceTimer struct {
	Source  netip.Addr
	Expires time.Time
}

// group is the router's state for one group (RFC 3376 §6.2.1): filter
// mode, group timer, source records and compatibility timers, plus the
// retransmissions of queries for it that the querier still owes.
//
// Timers are deadlines. The router applies every deadline that has passed
// before it does anything else (Router.Advance), so between calls every
// non-zero deadline lies in the future: a source "with a running timer" is
// one whose timer is not zero.
type group struct {
	addr netip.Addr
	mode FilterMode
	// timer is the group timer; it runs in EXCLUDE mode only.
	timer time.Time
	// srcs are the source records, sorted by address. In INCLUDE mode all
	// have a running timer; in EXCLUDE mode those with a running timer
	// are the "requested" list X and the others the "exclude" list Y.
	srcs []source
	// v1Host and v2Host are the Older Host Present timers (RFC 3376
	// §7.3.2); v2Host is also MLDv1's (RFC 3810 §8.3.2).
	v1Host, v2Host time.Time
	reporter       netip.Addr

	// gsqLeft group-specific queries remain to be sent, the next at
	// gsqNext. Sources with rexmit > 0 owe group-and-source-specific
	// queries, the next batch at gssqNext.
	gsqLeft  int
	gsqNext  time.Time
	gssqNext time.Time

	// due is the earliest of the deadlines above; heapIndex the group's
	// place in the router's deadline heap, or -1 when it has no deadline.
	due       time.Time
	heapIndex int
}

// source is one source record of a group.
type source struct {
	addr   netip.Addr
	timer  time.Time
	rexmit int // group-and-source-specific queries still owed for it
}

// filter appends the group's forwarding filter to buf (reused by the
// caller) and returns it.
func (g *group) filter(buf []netip.Addr) Filter {
	buf = buf[:0]
	for _, s := range g.srcs {
		if g.mode == Include || s.timer.IsZero() {
			buf = append(buf, s.addr)
		}
	}
	return Filter{Mode: g.mode, Sources: buf}
}

// allows is Filter.Allows of the group's filter, without building it.
func (g *group) allows(src netip.Addr) bool {
	if !src.IsValid() {
		return true
	}
	i, found := slices.BinarySearchFunc(g.srcs, src, func(s source, a netip.Addr) int { return s.addr.Compare(a) })
	if g.mode == Include {
		return found
	}
	return !found || !g.srcs[i].timer.IsZero()
}

// compat returns the group's compatibility mode, no newer than newest.
func (g *group) compat(newest Protocol) Protocol {
	switch {
	case !g.v1Host.IsZero() && newest.Family() == IPv4:
		return IGMPv1
	case !g.v2Host.IsZero() && newest.level() > 2:
		if newest.Family() == IPv6 {
			return MLDv1
		}
		return IGMPv2
	}
	return newest
}

// expires returns the latest of the group's timers.
func (g *group) expires() time.Time {
	t := g.timer
	for _, s := range g.srcs {
		if s.timer.After(t) {
			t = s.timer
		}
	}
	return t
}

// updateDue recomputes the group's earliest deadline.
func (g *group) updateDue() {
	var due time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	earliest(g.timer)
	earliest(g.v1Host)
	earliest(g.v2Host)
	if g.gsqLeft > 0 {
		earliest(g.gsqNext)
	}
	earliest(g.gssqNext)
	for _, s := range g.srcs {
		earliest(s.timer)
	}
	g.due = due
}

// snapshot returns the group as the table shows it.
func (g *group) snapshot(newest Protocol) Group {
	out := Group{
		Group:    g.addr,
		Filter:   g.filter(nil),
		Compat:   g.compat(newest),
		Reporter: g.reporter,
		Expires:  g.expires(),
	}
	for _, s := range g.srcs {
		out.Sources = append(out.Sources, SourceTimer{Source: s.addr, Expires: s.timer})
	}
	return out
}

// deadlines is a min-heap of groups by due time: the router finds the next
// timer to run in O(1) and reschedules a group in O(log n), without a
// runtime timer per group or source.
type deadlines []*group

func (h deadlines) less(i, j int) bool { return h[i].due.Before(h[j].due) }

func (h deadlines) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h deadlines) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h deadlines) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

// fix puts g at its place for its due time: in the heap when it has one,
// out of it when not.
func (h *deadlines) fix(g *group) {
	switch {
	case g.due.IsZero() && g.heapIndex >= 0:
		h.remove(g)
	case g.due.IsZero():
	case g.heapIndex < 0:
		g.heapIndex = len(*h)
		*h = append(*h, g)
		h.up(g.heapIndex)
	default:
		h.down(g.heapIndex)
		h.up(g.heapIndex)
	}
}

func (h *deadlines) remove(g *group) {
	i, last := g.heapIndex, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	g.heapIndex = -1
	if i != last {
		h.down(i)
		h.up(i)
	}
}
