package querier

import (
	"net/netip"
	"slices"
	"time"
)

// record applies one group record from reporter: the router's reaction
// tables of RFC 3376 §6.4 (RFC 3810 §7.4 is the same for MLD), after the
// translations of the group's compatibility mode (§7.3.2). IGMPv1/v2 and
// MLDv1 messages arrive here translated too: report = IS_EX({}), leave =
// TO_IN({}).
func (r *Router) record(reporter netip.Addr, typ RecordType, addr netip.Addr, srcs []netip.Addr) {
	g := r.groups[addr]
	compat := r.proto
	if g != nil {
		compat = g.compat(r.proto)
	}
	if compat.level() < 3 {
		// Older hosts know no source filters: BLOCK is ignored and
		// TO_EX's sources are (RFC 3376 §7.3.2).
		switch typ {
		case Block:
			return
		case ToExclude:
			srcs = nil
		}
	}
	b := r.sortedSet(srcs)
	created := false
	if g == nil {
		// No state is INCLUDE({}): records that leave it so change
		// nothing, and need no group.
		if len(b) == 0 && typ != IsExclude && typ != ToExclude {
			return
		}
		if typ == Block {
			return
		}
		if len(r.groups) >= r.cfg.MaxGroups {
			r.cnt.GroupsRefused++
			return
		}
		g = &group{addr: addr, mode: Include, heapIndex: -1}
		created = true
	}
	before := g.filter(r.before)
	beforeMode := g.mode
	r.apply(g, typ, b)
	g.reporter = reporter
	if len(g.srcs) > r.cfg.MaxSources {
		r.cnt.SourcesRefused += uint64(len(g.srcs) - r.cfg.MaxSources)
		g.srcs = g.srcs[:r.cfg.MaxSources]
	}
	switch {
	case created && g.mode == Include && len(g.srcs) == 0:
		return
	case created:
		r.groups[addr] = g
		r.reschedule(g)
		r.event(Joined, g, reporter)
		return
	}
	r.reschedule(g)
	after := g.filter(r.after)
	r.before, r.after = before.Sources, after.Sources
	if g.mode != beforeMode || !slices.Equal(before.Sources, after.Sources) {
		r.event(FilterChanged, g, reporter)
	}
}

// apply changes g for a record of type typ with the sorted source set b.
// The comments quote the rows of RFC 3376 §6.4.1 and §6.4.2: A and B are
// source sets, X and Y EXCLUDE mode's requested and excluded lists; (S)=T
// sets the timers of S to T; Q(G,S) and Q(G) are the queries the querier
// sends.
func (r *Router) apply(g *group, typ RecordType, b []netip.Addr) {
	now := r.now
	gmi := now.Add(r.timing().gmi())
	if g.mode == Include {
		switch typ {
		case IsInclude, Allow: // INCLUDE (A+B); (B)=GMI
			r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
				if inB {
					s.timer = gmi
				}
				return s, true
			})
		case ToInclude: // INCLUDE (A+B); (B)=GMI; Q(G,A-B)
			q := r.querySrcs[:0]
			r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
				if inB {
					s.timer = gmi
				} else {
					q = append(q, s.addr)
				}
				return s, true
			})
			r.querySrcs = q
			r.querySources(g, q)
		case Block: // INCLUDE (A); Q(G,A*B)
			r.querySources(g, r.intersect(g, b))
		case IsExclude, ToExclude:
			// IS_EX: EXCLUDE (A*B,B-A); (B-A)=0; Delete (A-B);
			// Group Timer=GMI. TO_EX: the same, and Q(G,A*B).
			q := r.querySrcs[:0]
			r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
				if inA && inB {
					q = append(q, s.addr)
				} else if inB {
					s.timer = time.Time{}
				}
				return s, inB
			})
			r.querySrcs = q
			g.mode, g.timer = Exclude, gmi
			if typ == ToExclude {
				r.querySources(g, q)
			}
		}
		return
	}
	switch typ {
	case IsInclude, Allow: // EXCLUDE (X+A,Y-A); (A)=GMI
		r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
			if inB {
				s.timer = gmi
			}
			return s, true
		})
	case ToInclude: // EXCLUDE (X+A,Y-A); (A)=GMI; Q(G,X-A); Q(G)
		q := r.querySrcs[:0]
		r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
			if inB {
				s.timer = gmi
			} else if !s.timer.IsZero() {
				q = append(q, s.addr)
			}
			return s, true
		})
		r.querySrcs = q
		r.querySources(g, q)
		r.queryGroup(g)
	case Block: // EXCLUDE (X+(A-Y),Y); (A-X-Y)=Group Timer; Q(G,A-Y)
		q := r.querySrcs[:0]
		r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
			if inB && !inA {
				s.timer = g.timer
			}
			if inB && !s.timer.IsZero() {
				q = append(q, s.addr)
			}
			return s, true
		})
		r.querySrcs = q
		r.querySources(g, q)
	case IsExclude, ToExclude:
		// IS_EX: EXCLUDE (A-Y,Y*A); (A-X-Y)=GMI; Delete (X-A);
		// Delete (Y-A); Group Timer=GMI. TO_EX: the same but
		// (A-X-Y)=Group Timer, and Q(G,A-Y).
		newTimer := gmi
		if typ == ToExclude {
			newTimer = g.timer
		}
		q := r.querySrcs[:0]
		r.merge(g, b, func(s source, inA, inB bool) (source, bool) {
			if inB && !inA {
				s.timer = newTimer
			}
			if inB && !s.timer.IsZero() {
				q = append(q, s.addr)
			}
			return s, inB
		})
		r.querySrcs = q
		g.timer = gmi
		if typ == ToExclude {
			r.querySources(g, q)
		}
	}
}

// merge rebuilds g's source list from the union of its sources (A) and the
// sorted set b (B), in address order: keep is called with each address's
// record — a new, zero-timer one for an address only in B — and returns it,
// its timer maybe changed, and whether it stays. (A value, not a pointer:
// a pointer passed to a func value would move each record to the heap.)
func (r *Router) merge(g *group, b []netip.Addr, keep func(s source, inA, inB bool) (source, bool)) {
	out := r.mergeBuf[:0]
	i, j := 0, 0
	for i < len(g.srcs) || j < len(b) {
		var s source
		var inA, inB bool
		switch {
		case j == len(b) || (i < len(g.srcs) && g.srcs[i].addr.Less(b[j])):
			s, inA = g.srcs[i], true
			i++
		case i == len(g.srcs) || b[j].Less(g.srcs[i].addr):
			s, inB = source{addr: b[j]}, true
			j++
		default:
			s, inA, inB = g.srcs[i], true, true
			i++
			j++
		}
		if s, ok := keep(s, inA, inB); ok {
			out = append(out, s)
		}
	}
	// Swap buffers: g keeps the merged list, the old one becomes scratch.
	r.mergeBuf = g.srcs[:0]
	g.srcs = out
}

// intersect returns the addresses of g's sources that are in the sorted
// set b, in r.querySrcs.
func (r *Router) intersect(g *group, b []netip.Addr) []netip.Addr {
	q := r.querySrcs[:0]
	i, j := 0, 0
	for i < len(g.srcs) && j < len(b) {
		switch c := g.srcs[i].addr.Compare(b[j]); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			q = append(q, b[j])
			i++
			j++
		}
	}
	r.querySrcs = q
	return q
}

// sortedSet copies srcs into scratch space, sorted and without duplicates.
// Addresses of the other family are dropped: they cannot be sources.
func (r *Router) sortedSet(srcs []netip.Addr) []netip.Addr {
	b := r.recSrcs[:0]
	for _, s := range srcs {
		if (s.Is4() && r.fam == IPv4) || (s.Is6() && r.fam == IPv6) {
			b = append(b, s)
		}
	}
	slices.SortFunc(b, netip.Addr.Compare)
	b = slices.Compact(b)
	r.recSrcs = b
	return b
}

// queryGroup is the table action Q(G) (RFC 3376 §6.6.3.1): the querier
// lowers the group timer to the Last Member Query Time and sends
// LastMemberQueryCount group-specific queries, LastMemberQueryInterval
// apart. Other routers do nothing: the querier's queries lower their
// timers (receiveQuery).
func (r *Router) queryGroup(g *group) {
	if r.el.role != Querier {
		return
	}
	t := r.timing()
	if lmqt := r.now.Add(t.lmqt()); g.timer.After(lmqt) {
		g.timer = lmqt
	}
	g.gsqLeft = t.lmqc
	g.gsqNext = r.now
	r.sendGroupQuery(g)
}

// querySources is the table action Q(G,S) (RFC 3376 §6.6.3.2): for each
// source of S whose timer is above the Last Member Query Time, the querier
// lowers the timer to it and owes LastMemberQueryCount
// group-and-source-specific queries for it. The queries go out at once and
// then every LastMemberQueryInterval while any are owed. Queries of a
// version without source lists cannot ask about sources: then nothing
// happens, and the sources time out on their own.
func (r *Router) querySources(g *group, s []netip.Addr) {
	if r.el.role != Querier || len(s) == 0 || !r.proto.SourceFiltering() {
		return
	}
	t := r.timing()
	lmqt := r.now.Add(t.lmqt())
	owed := false
	for _, a := range s {
		i, found := slices.BinarySearchFunc(g.srcs, a, func(s source, a netip.Addr) int { return s.addr.Compare(a) })
		if found && g.srcs[i].timer.After(lmqt) {
			g.srcs[i].timer = lmqt
			g.srcs[i].rexmit = t.lmqc
			owed = true
		}
	}
	if owed {
		r.sendSourceQueries(g)
	}
}

// sendGroupQuery sends the group-specific query g owes now and schedules
// the next. The S flag is set when a report has since raised the group
// timer above the Last Member Query Time: other routers must then not
// lower theirs.
func (r *Router) sendGroupQuery(g *group) {
	if g.gsqLeft == 0 || g.gsqNext.After(r.now) {
		return
	}
	t := r.timing()
	r.newQuery(g.addr, t.lmqi)
	if r.proto.SourceFiltering() {
		r.query.Suppress = g.timer.Sub(r.now) > t.lmqt()
	}
	r.sendQuery(g.addr)
	g.gsqLeft--
	g.gsqNext = r.now.Add(t.lmqi)
}

// sendSourceQueries sends the group-and-source-specific queries g owes now
// (RFC 3376 §6.6.3.2): one with the S flag for the owed sources whose timer
// a report has raised above the Last Member Query Time, one without for the
// others, each split to fit a packet.
func (r *Router) sendSourceQueries(g *group) {
	t := r.timing()
	lmqt := r.now.Add(t.lmqt())
	plain, suppressed := r.querySrcs[:0], r.suppressed[:0]
	for i := range g.srcs {
		s := &g.srcs[i]
		if s.rexmit == 0 {
			continue
		}
		s.rexmit--
		if s.timer.After(lmqt) {
			suppressed = append(suppressed, s.addr)
		} else {
			plain = append(plain, s.addr)
		}
	}
	r.querySrcs, r.suppressed = plain, suppressed
	for _, batch := range []struct {
		srcs     []netip.Addr
		suppress bool
	}{{suppressed, true}, {plain, false}} {
		for len(batch.srcs) > 0 {
			n := min(len(batch.srcs), maxQuerySources(r.fam))
			r.newQuery(g.addr, t.lmqi)
			r.query.Suppress = batch.suppress
			r.query.Sources = append(r.query.Sources, batch.srcs[:n]...)
			r.sendQuery(g.addr)
			batch.srcs = batch.srcs[n:]
		}
	}
	g.gssqNext = time.Time{}
	for _, s := range g.srcs {
		if s.rexmit > 0 {
			g.gssqNext = r.now.Add(t.lmqi)
			break
		}
	}
}

// maxQuerySources is how many sources fit a query in a packet of 1280
// bytes, IPv6's minimum MTU, after the IP header (with Router Alert) and
// the query's fixed part: (1280-24-12)/4 for IGMPv3, (1280-48-28)/16 for
// MLDv2.
func maxQuerySources(f Family) int {
	if f == IPv6 {
		return 75
	}
	return 311
}

// expire applies g's timers due by now (RFC 3376 §6.3, §6.5): older-host
// timers end, owed queries go out, source timers expire (INCLUDE: the
// source goes; EXCLUDE: it joins the excluded list), and an expired group
// timer turns EXCLUDE into INCLUDE of the sources still timed. A group
// left in INCLUDE({}) is deleted.
func (r *Router) expire(g *group) {
	now := r.now
	before := g.filter(r.before)
	beforeMode := g.mode
	if !g.v1Host.IsZero() && !g.v1Host.After(now) {
		g.v1Host = time.Time{}
	}
	if !g.v2Host.IsZero() && !g.v2Host.After(now) {
		g.v2Host = time.Time{}
	}
	if r.el.role == Querier {
		if g.mode == Exclude {
			r.sendGroupQuery(g)
		}
		if !g.gssqNext.IsZero() && !g.gssqNext.After(now) {
			r.sendSourceQueries(g)
		}
	} else {
		r.dropOwedQueries(g)
	}
	if g.mode == Include {
		g.gsqLeft = 0
	}
	groupExpired := g.mode == Exclude && !g.timer.After(now)
	r.merge(g, nil, func(s source, _, _ bool) (source, bool) {
		if !s.timer.IsZero() && !s.timer.After(now) {
			s.timer = time.Time{}
			s.rexmit = 0
			return s, g.mode == Exclude && !groupExpired
		}
		// When the group timer expires, EXCLUDE's excluded sources go.
		return s, !(groupExpired && s.timer.IsZero())
	})
	if groupExpired {
		g.mode, g.timer, g.gsqLeft = Include, time.Time{}, 0
	}
	if g.mode == Include && len(g.srcs) == 0 {
		r.heap.remove(g)
		delete(r.groups, g.addr)
		r.event(Left, g, netip.Addr{})
		return
	}
	r.reschedule(g)
	after := g.filter(r.after)
	r.before, r.after = before.Sources, after.Sources
	if g.mode != beforeMode || !slices.Equal(before.Sources, after.Sources) {
		r.event(FilterChanged, g, netip.Addr{})
	}
}

// dropOwedQueries forgets the queries g owes: only the querier sends them.
func (r *Router) dropOwedQueries(g *group) {
	g.gsqLeft, g.gssqNext = 0, time.Time{}
	for i := range g.srcs {
		g.srcs[i].rexmit = 0
	}
}

// event emits an event of kind about g.
func (r *Router) event(kind EventKind, g *group, reporter netip.Addr) {
	ev := Event{Kind: kind, Ifindex: r.ifindex, Family: r.fam, Group: g.addr, Reporter: reporter}
	if kind != Left {
		ev.Filter = g.filter(nil)
	}
	r.emit(ev)
}
