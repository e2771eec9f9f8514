package querier

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sent is one query a Router sent, recorded by the fake Sender.
type sent struct {
	at  time.Duration // since the harness's start
	dst netip.Addr
	msg Message
}

// harness drives a Router on a fake clock and records what it sends and
// emits.
type harness struct {
	t      *testing.T
	r      *Router
	t0     time.Time
	now    time.Time
	sent   []sent
	events []Event
	fail   error // returned by the fake Sender
}

func (h *harness) SendQuery(m *Message, src, dst netip.Addr) error {
	if h.fail != nil {
		return h.fail
	}
	c := *m
	c.Sources = slices.Clone(m.Sources)
	c.Records = nil
	h.sent = append(h.sent, sent{at: h.now.Sub(h.t0), dst: dst, msg: c})
	return nil
}

// testConfig: RFC defaults with a count of 2 everywhere: GMI 260 s, LMQT 2 s.
func testConfig(querier bool) *Config {
	return &Config{Querier: querier}
}

func newHarness(t *testing.T, fam Family, cfg *Config, self string) *harness {
	t.Helper()
	h := &harness{t: t, t0: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.now = h.t0
	r, err := NewRouter(fam, 7, cfg, h, func(ev Event) { h.events = append(h.events, ev) })
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	if self != "" {
		r.SetAddress(h.now, a(self))
	}
	return h
}

// to runs the router's timers up to d after the start, waking at each of
// its deadlines as the Linux loop does.
func (h *harness) to(d time.Duration) {
	end := h.t0.Add(d)
	for {
		next := h.r.NextDeadline()
		if next.IsZero() || next.After(end) {
			break
		}
		h.now = next
		h.r.Advance(next)
	}
	h.now = end
	h.r.Advance(end)
}

func (h *harness) receive(src string, m Message) {
	h.r.Receive(h.now, a(src), &m)
}

func (h *harness) records(src string, recs ...Record) {
	p := IGMPv3
	if h.r.fam == IPv6 {
		p = MLDv2
	}
	h.receive(src, Message{Kind: KindRecords, Protocol: p, Records: recs})
}

func rec(t RecordType, group string, srcs ...string) Record {
	return Record{Type: t, Group: a(group), Sources: addrs(srcs...)}
}

// specific returns the group-specific and group-and-source-specific
// queries sent, in a short form: "10s Q(G) S", "12s Q(G,{1,5})".
func (h *harness) specific() []string {
	var out []string
	for _, s := range h.sent {
		if s.msg.Group.IsUnspecified() {
			continue
		}
		q := fmt.Sprintf("%v Q(G", s.at)
		if len(s.msg.Sources) > 0 {
			q += ",{" + lastOctets(s.msg.Sources) + "}"
		}
		q += ")"
		if s.msg.Suppress {
			q += " S"
		}
		out = append(out, q)
	}
	return out
}

func lastOctets(as []netip.Addr) string {
	var parts []string
	for _, x := range as {
		b := x.AsSlice()
		parts = append(parts, fmt.Sprint(b[len(b)-1]))
	}
	return strings.Join(parts, ",")
}

// state describes group in the short form of RFC 3376's tables, timers in
// seconds since the start: "INCLUDE {1:260 2:270}",
// "EXCLUDE GT=270 X{2:260} Y{3}", or "absent".
func (h *harness) state(group string) string {
	g, ok := h.r.Lookup(a(group))
	if !ok {
		return "absent"
	}
	secs := func(t time.Time) string { return fmt.Sprint(int(t.Sub(h.t0).Seconds())) }
	var x, y []string
	for _, s := range g.Sources {
		b := s.Source.AsSlice()
		n := fmt.Sprint(b[len(b)-1])
		if s.Expires.IsZero() {
			y = append(y, n)
		} else {
			x = append(x, n+":"+secs(s.Expires))
		}
	}
	if g.Filter.Mode == Include {
		return "INCLUDE {" + strings.Join(x, " ") + "}"
	}
	gt := h.r.groups[a(group)].timer
	return fmt.Sprintf("EXCLUDE GT=%s X{%s} Y{%s}", secs(gt), strings.Join(x, " "), strings.Join(y, " "))
}

const G = "239.1.1.1"

func srcs(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("10.0.0.%d", n))
	}
	return out
}

// TestReactionTables runs every row of RFC 3376 §6.4.1 and §6.4.2 on a
// querier: the state the record leaves and the queries it sends. The
// starting state is set up at 0 s (timers 260 s = GMI), the record arrives
// at 10 s (GMI then ends at 270 s; LMQT, 2 s, at 12 s).
func TestReactionTables(t *testing.T) {
	include := []Record{rec(IsInclude, G, srcs(1, 2)...)}                               // INCLUDE (A={1,2})
	exclude := []Record{rec(IsExclude, G, srcs(3, 4)...), rec(Allow, G, srcs(1, 2)...)} // EXCLUDE (X={1,2}, Y={3,4})
	tests := []struct {
		name    string
		start   []Record
		rec     Record
		want    string
		queries []string
	}{
		{"INCLUDE IS_IN", include, rec(IsInclude, G, srcs(2, 3)...), "INCLUDE {1:260 2:270 3:270}", nil},
		{"INCLUDE ALLOW", include, rec(Allow, G, srcs(2, 3)...), "INCLUDE {1:260 2:270 3:270}", nil},
		{"INCLUDE TO_IN", include, rec(ToInclude, G, srcs(2, 3)...), "INCLUDE {1:12 2:270 3:270}", []string{"10s Q(G,{1})"}},
		{"INCLUDE BLOCK", include, rec(Block, G, srcs(2, 3)...), "INCLUDE {1:260 2:12}", []string{"10s Q(G,{2})"}},
		{"INCLUDE IS_EX", include, rec(IsExclude, G, srcs(2, 3)...), "EXCLUDE GT=270 X{2:260} Y{3}", nil},
		{"INCLUDE TO_EX", include, rec(ToExclude, G, srcs(2, 3)...), "EXCLUDE GT=270 X{2:12} Y{3}", []string{"10s Q(G,{2})"}},
		{"EXCLUDE IS_IN", exclude, rec(IsInclude, G, srcs(2, 3, 5)...), "EXCLUDE GT=260 X{1:260 2:270 3:270 5:270} Y{4}", nil},
		{"EXCLUDE ALLOW", exclude, rec(Allow, G, srcs(2, 3, 5)...), "EXCLUDE GT=260 X{1:260 2:270 3:270 5:270} Y{4}", nil},
		{"EXCLUDE TO_IN", exclude, rec(ToInclude, G, srcs(2, 3, 5)...), "EXCLUDE GT=12 X{1:12 2:270 3:270 5:270} Y{4}",
			[]string{"10s Q(G,{1})", "10s Q(G)"}},
		{"EXCLUDE BLOCK", exclude, rec(Block, G, srcs(2, 3, 5)...), "EXCLUDE GT=260 X{1:260 2:12 5:12} Y{3 4}", []string{"10s Q(G,{2,5})"}},
		{"EXCLUDE IS_EX", exclude, rec(IsExclude, G, srcs(2, 3, 5)...), "EXCLUDE GT=270 X{2:260 5:270} Y{3}", nil},
		{"EXCLUDE TO_EX", exclude, rec(ToExclude, G, srcs(2, 3, 5)...), "EXCLUDE GT=270 X{2:12 5:12} Y{3}", []string{"10s Q(G,{2,5})"}},
		{"no state IS_IN{}", nil, rec(IsInclude, G), "absent", nil},
		{"no state TO_IN{}", nil, rec(ToInclude, G), "absent", nil},
		{"no state BLOCK", nil, rec(Block, G, srcs(1)...), "absent", nil},
		{"no state TO_EX{}", nil, rec(ToExclude, G), "EXCLUDE GT=270 X{} Y{}", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, IPv4, testConfig(true), "10.0.0.100")
			h.records("10.0.0.50", tc.start...)
			h.to(10 * time.Second)
			h.records("10.0.0.50", tc.rec)
			if diff := cmp.Diff(tc.want, h.state(G)); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.queries, h.specific()); diff != "" {
				t.Errorf("queries (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLeave follows a listener that joins and leaves: the querier asks the
// group twice, LastMemberQueryInterval apart, and the group is gone after
// the Last Member Query Time, with a Left event.
func TestLeave(t *testing.T) {
	for _, tc := range []struct {
		name  string
		join  Message
		leave Message
	}{
		{"IGMPv3", Message{Kind: KindRecords, Protocol: IGMPv3, Records: []Record{rec(ToExclude, G)}},
			Message{Kind: KindRecords, Protocol: IGMPv3, Records: []Record{rec(ToInclude, G)}}},
		{"IGMPv2", Message{Kind: KindReport, Protocol: IGMPv2, Group: a(G)}, Message{Kind: KindLeave, Protocol: IGMPv2, Group: a(G)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, IPv4, testConfig(true), "10.0.0.100")
			h.receive("10.0.0.5", tc.join)
			if !h.r.Allowed(a(G), a("192.0.2.1")) {
				t.Fatal("a joined group does not allow traffic")
			}
			h.to(30 * time.Second)
			h.receive("10.0.0.5", tc.leave)
			h.to(31900 * time.Millisecond)
			if got := h.state(G); !strings.HasPrefix(got, "EXCLUDE GT=32") {
				t.Errorf("state 1.9 s after the leave: %s, want EXCLUDE with the group timer at 32 s", got)
			}
			h.to(40 * time.Second)
			want := []string{"30s Q(G)", "31s Q(G)"}
			if diff := cmp.Diff(want, h.specific()); diff != "" {
				t.Errorf("group-specific queries (-want +got):\n%s", diff)
			}
			if h.r.Allowed(a(G), netip.Addr{}) {
				t.Error("the group still allows traffic after the leave")
			}
			wantEvents := []EventKind{RoleChanged, Joined, Left}
			var got []EventKind
			for _, ev := range h.events {
				got = append(got, ev.Kind)
			}
			if diff := cmp.Diff(wantEvents, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if left := h.events[len(h.events)-1]; left.Group != a(G) || left.Ifindex != 7 || left.Family != IPv4 {
				t.Errorf("Left event %+v, want group %s on ifindex 7, IPv4", left, G)
			}
		})
	}
}

// TestReportKeepsGroup: a report during the leave's queries keeps the
// group, and the queries still owed go out with the S flag.
func TestReportKeepsGroup(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(true), "10.0.0.100")
	h.records("10.0.0.5", rec(ToExclude, G))
	h.records("10.0.0.6", rec(ToExclude, G))
	h.to(30 * time.Second)
	h.records("10.0.0.5", rec(ToInclude, G))
	h.to(30500 * time.Millisecond)
	h.records("10.0.0.6", rec(IsExclude, G))
	h.to(40 * time.Second)
	if diff := cmp.Diff([]string{"30s Q(G)", "31s Q(G) S"}, h.specific()); diff != "" {
		t.Errorf("queries (-want +got):\n%s", diff)
	}
	if got, want := h.state(G), "EXCLUDE GT=290 X{} Y{}"; got != want {
		t.Errorf("state: %s, want %s", got, want)
	}
}

// TestTimeout: a listener that stops answering is gone after the Group
// Membership Interval; one that answers every query stays.
func TestTimeout(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(false), "")
	h.records("10.0.0.5", rec(IsExclude, G), rec(IsExclude, "239.1.1.2"))
	for at := 100 * time.Second; at < 600*time.Second; at += 100 * time.Second {
		h.to(at - 41*time.Second)
		if _, ok := h.r.Lookup(a(G)); at == 300*time.Second && !ok {
			t.Fatal("group gone before the Group Membership Interval")
		}
		h.to(at - 40*time.Second)
		if _, ok := h.r.Lookup(a(G)); at == 300*time.Second && ok {
			t.Error("group still there at the Group Membership Interval (260 s)")
		}
		h.to(at)
		h.records("10.0.0.5", rec(IsExclude, "239.1.1.2"))
	}
	h.to(600 * time.Second)
	if _, ok := h.r.Lookup(a("239.1.1.2")); !ok {
		t.Error("a group reported every 100 s timed out")
	}
}

// TestExcludeTimesOutToInclude: when the group timer of an EXCLUDE group
// runs out, sources still asked for by name keep the group in INCLUDE
// (RFC 3376 §6.5), and the filter change is reported.
func TestExcludeTimesOutToInclude(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(false), "")
	h.records("10.0.0.5", rec(IsExclude, G, srcs(3)...))
	h.to(100 * time.Second)
	h.records("10.0.0.6", rec(Allow, G, srcs(1)...))
	h.to(261 * time.Second)
	if got, want := h.state(G), "INCLUDE {1:360}"; got != want {
		t.Errorf("state after the group timer: %s, want %s", got, want)
	}
	if !h.r.Allowed(a(G), a("10.0.0.1")) || h.r.Allowed(a(G), a("10.0.0.9")) {
		t.Error("INCLUDE {10.0.0.1} must allow 10.0.0.1 and nothing else")
	}
	last := h.events[len(h.events)-1]
	if last.Kind != FilterChanged || last.Filter.Mode != Include || lastOctets(last.Filter.Sources) != "1" || last.Reporter.IsValid() {
		t.Errorf("last event %+v, want FilterChanged to INCLUDE {10.0.0.1} by a timer", last)
	}
}

// TestAllowed checks the forwarding decisions of the filters: EXCLUDE{S}
// allows all but S, INCLUDE{S1,S2} only those, an absent group nothing.
func TestAllowed(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(false), "")
	h.records("10.0.0.5", rec(IsExclude, "239.1.1.1", "10.0.0.1"), rec(IsInclude, "239.1.1.2", "10.0.0.1", "10.0.0.2"))
	tests := []struct {
		group, source string
		want          bool
	}{
		{"239.1.1.1", "10.0.0.1", false},
		{"239.1.1.1", "10.0.0.2", true},
		{"239.1.1.1", "", true},
		{"239.1.1.2", "10.0.0.1", true},
		{"239.1.1.2", "10.0.0.2", true},
		{"239.1.1.2", "10.0.0.3", false},
		{"239.1.1.2", "", true},
		{"239.1.1.3", "", false},
		{"239.1.1.3", "10.0.0.1", false},
	}
	for _, tc := range tests {
		var src netip.Addr
		if tc.source != "" {
			src = a(tc.source)
		}
		if got := h.r.Allowed(a(tc.group), src); got != tc.want {
			t.Errorf("Allowed(%s, %q) = %v, want %v", tc.group, tc.source, got, tc.want)
		}
		if g, ok := h.r.Lookup(a(tc.group)); ok && g.Filter.Allows(src) != tc.want {
			t.Errorf("Lookup(%s).Filter.Allows(%q) = %v, want %v", tc.group, tc.source, !tc.want, tc.want)
		}
	}
}

// TestCompatibility: IGMPv1 and IGMPv2 hosts put a group in compatibility
// mode for the Older Host Present Interval, in which BLOCK and TO_EX's
// sources are ignored and (IGMPv1) leaves too (RFC 3376 §7.3.2).
func TestCompatibility(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(false), "")
	h.receive("10.0.0.5", Message{Kind: KindReport, Protocol: IGMPv2, Group: a(G)})
	h.records("10.0.0.6", rec(ToExclude, G, srcs(1)...))
	h.records("10.0.0.6", rec(Block, G, srcs(2)...))
	if got, want := h.state(G), "EXCLUDE GT=260 X{} Y{}"; got != want {
		t.Errorf("IGMPv2 mode: %s, want %s (TO_EX sources and BLOCK ignored)", got, want)
	}
	if g, _ := h.r.Lookup(a(G)); g.Compat != IGMPv2 {
		t.Errorf("compat %v, want IGMPv2", g.Compat)
	}
	h.receive("10.0.0.7", Message{Kind: KindReport, Protocol: IGMPv1, Group: a(G)})
	h.receive("10.0.0.5", Message{Kind: KindLeave, Protocol: IGMPv2, Group: a(G)})
	if g, _ := h.r.Lookup(a(G)); g.Compat != IGMPv1 {
		t.Errorf("compat %v, want IGMPv1", g.Compat)
	}
	h.to(200 * time.Second)
	h.records("10.0.0.6", rec(IsExclude, G))
	h.to(261 * time.Second)
	if g, _ := h.r.Lookup(a(G)); g.Compat != IGMPv3 {
		t.Errorf("compat %v after the Older Host Present Interval, want IGMPv3", g.Compat)
	}
	// TO_EX's sources count again: EXCLUDE (A-Y, Y*A), (A-X-Y) = Group
	// Timer (460 s, from the IS_EX at 200 s).
	h.records("10.0.0.6", rec(ToExclude, G, srcs(1)...))
	if got, want := h.state(G), "EXCLUDE GT=521 X{1:460} Y{}"; got != want {
		t.Errorf("back in IGMPv3 mode: %s, want %s", got, want)
	}
}

// TestElection: a querier starts with StartupQueryCount queries, falls
// silent when a lower address queries, takes over again after the Other
// Querier Present Interval, and ignores higher addresses and 0.0.0.0.
func TestElection(t *testing.T) {
	cfg := &Config{Querier: true, QueryInterval: 10 * time.Second, QueryResponseInterval: 2 * time.Second}
	h := newHarness(t, IPv4, cfg, "10.0.0.100")
	general := func() []time.Duration {
		var at []time.Duration
		for _, s := range h.sent {
			if s.msg.Group.IsUnspecified() {
				at = append(at, s.at)
			}
		}
		return at
	}
	query := Message{Kind: KindQuery, Protocol: IGMPv3, Group: v4, MaxResp: 2 * time.Second, QRV: 2, QQI: 10 * time.Second}
	h.to(25 * time.Second)
	// Startup: 0 s, then 2.5 s later (QueryInterval/4), then every 10 s.
	s := time.Second
	if diff := cmp.Diff([]time.Duration{0, 2500 * time.Millisecond, 12500 * time.Millisecond, 22500 * time.Millisecond}, general()); diff != "" {
		t.Errorf("general queries (-want +got):\n%s", diff)
	}
	h.receive("10.0.0.200", query) // higher: we stay querier
	h.receive("0.0.0.0", query)    // no address: takes no part
	if st := h.r.Status(); st.Role != Querier || st.Querier != a("10.0.0.100") {
		t.Fatalf("status %+v after queries from a higher address and 0.0.0.0, want Querier", st)
	}
	h.receive("10.0.0.1", query) // lower: it wins
	if st := h.r.Status(); st.Role != NonQuerier || st.Querier != a("10.0.0.1") || st.QuerierExpires != h.t0.Add(25*s+21*s) {
		t.Fatalf("status %+v, want NonQuerier behind 10.0.0.1 until 46 s (OQPI 2×10+1 s)", st)
	}
	// The winner queries every 10 s until 55 s, then goes away.
	for at := 35 * s; at <= 55*s; at += 10 * s {
		h.to(at)
		h.receive("10.0.0.1", query)
	}
	h.to(75 * s)
	if n := len(general()); n != 4 {
		t.Errorf("%d general queries by 75 s, want none after the other querier won at 25 s", n)
	}
	h.to(76 * s) // 55 s + 21 s: the other querier is gone; startup again
	h.to(80 * s)
	if diff := cmp.Diff([]time.Duration{76 * s, 78500 * time.Millisecond}, general()[4:]); diff != "" {
		t.Errorf("general queries after the takeover (-want +got):\n%s", diff)
	}
	var roles []string
	for _, ev := range h.events {
		if ev.Kind == RoleChanged {
			roles = append(roles, fmt.Sprintf("%v %v", ev.Role, ev.Querier))
		}
	}
	want := []string{"querier 10.0.0.100", "non-querier 10.0.0.1", "querier 10.0.0.100"}
	if diff := cmp.Diff(want, roles); diff != "" {
		t.Errorf("role events (-want +got):\n%s", diff)
	}
}

// TestNonQuerier: a router that does not query sends nothing on a leave;
// the querier's group-specific query lowers its group timer, so the group
// goes when the querier's does.
func TestNonQuerier(t *testing.T) {
	h := newHarness(t, IPv4, testConfig(true), "10.0.0.100")
	gq := Message{Kind: KindQuery, Protocol: IGMPv3, Group: v4, MaxResp: 10 * time.Second, QRV: 2, QQI: 125 * time.Second}
	h.receive("10.0.0.1", gq)
	h.sent = nil
	h.records("10.0.0.5", rec(ToExclude, G))
	h.to(30 * time.Second)
	h.records("10.0.0.5", rec(ToInclude, G))
	h.to(31 * time.Second)
	if len(h.sent) != 0 {
		t.Fatalf("a non-querier sent %d queries", len(h.sent))
	}
	if got := h.state(G); got != "EXCLUDE GT=260 X{} Y{}" {
		t.Fatalf("a non-querier changed its timers on a leave: %s", got)
	}
	// The querier's Q(G): Max Resp Time 1 s, QRV 2: LMQT 2 s.
	h.receive("10.0.0.1", Message{Kind: KindQuery, Protocol: IGMPv3, Group: a(G), MaxResp: time.Second, QRV: 2, QQI: 125 * time.Second})
	if got := h.state(G); got != "EXCLUDE GT=33 X{} Y{}" {
		t.Errorf("after the querier's group-specific query: %s, want the group timer at 33 s", got)
	}
	// One with the S flag changes nothing.
	h.records("10.0.0.6", rec(IsExclude, G))
	h.receive("10.0.0.1", Message{Kind: KindQuery, Protocol: IGMPv3, Group: a(G), MaxResp: time.Second, Suppress: true})
	if got := h.state(G); got != "EXCLUDE GT=291 X{} Y{}" {
		t.Errorf("after a query with the S flag: %s, want the group timer at 291 s", got)
	}
}

// TestMLD: the same machine on IPv6: MLDv1 listeners, done messages and
// queries to the group and to ff02::1 from our link-local address.
func TestMLD(t *testing.T) {
	h := newHarness(t, IPv6, testConfig(true), "fe80::100")
	if st := h.r.Status(); st.Role != Querier {
		t.Fatalf("role %v with a link-local address, want Querier", st.Role)
	}
	h.receive("fe80::5", Message{Kind: KindReport, Protocol: MLDv1, Group: a("ff3e::1")})
	if g, _ := h.r.Lookup(a("ff3e::1")); g.Compat != MLDv1 || g.Reporter != a("fe80::5") {
		t.Errorf("group %+v, want MLDv1 compat and reporter fe80::5", g)
	}
	h.receive("fe80::5", Message{Kind: KindLeave, Protocol: MLDv1, Group: a("ff3e::1")})
	h.to(10 * time.Second)
	if _, ok := h.r.Lookup(a("ff3e::1")); ok {
		t.Error("group still there after done and the last member queries")
	}
	if got := h.sent[0]; got.dst != a("ff02::1") || got.msg.Protocol != MLDv2 {
		t.Errorf("first query %+v, want MLDv2 to ff02::1", got)
	}
	var dsts []string
	for _, s := range h.sent[1:] {
		if !s.msg.Group.IsUnspecified() {
			dsts = append(dsts, s.dst.String())
		}
	}
	if diff := cmp.Diff([]string{"ff3e::1", "ff3e::1"}, dsts); diff != "" {
		t.Errorf("address-specific queries (-want +got):\n%s", diff)
	}
	// A global address cannot be a query source.
	h2 := newHarness(t, IPv6, testConfig(true), "fd00::1")
	if st := h2.r.Status(); st.Role != NoAddress {
		t.Errorf("role %v with only a global address, want NoAddress", st.Role)
	}
}

// TestLimits: a flood of groups or sources stops at MaxGroups and
// MaxSources, counted.
func TestLimits(t *testing.T) {
	h := newHarness(t, IPv4, &Config{MaxGroups: 3, MaxSources: 2}, "")
	for i := 1; i <= 5; i++ {
		h.records("10.0.0.5", rec(IsExclude, fmt.Sprintf("239.1.1.%d", i)))
	}
	h.records("10.0.0.5", rec(Allow, "239.1.1.1", srcs(1, 2, 3, 4)...))
	st := h.r.Status()
	if st.Groups != 3 || st.Counters.GroupsRefused != 2 || st.Counters.SourcesRefused != 2 {
		t.Errorf("groups %d, refused %d, sources refused %d; want 3, 2, 2", st.Groups, st.Counters.GroupsRefused, st.Counters.SourcesRefused)
	}
}

// TestConfig checks defaults and refusals.
func TestConfig(t *testing.T) {
	c, err := (*Config)(nil).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tm := timing{robustness: c.Robustness, qi: c.QueryInterval, qri: c.QueryResponseInterval, lmqi: c.LastMemberQueryInterval, lmqc: c.LastMemberQueryCount}
	if tm.gmi() != 260*time.Second || tm.oqpi() != 255*time.Second || tm.lmqt() != 2*time.Second || c.StartupQueryInterval != 31250*time.Millisecond {
		t.Errorf("defaults give GMI %v, OQPI %v, LMQT %v, startup interval %v; want 260s, 255s, 2s, 31.25s",
			tm.gmi(), tm.oqpi(), tm.lmqt(), c.StartupQueryInterval)
	}
	for _, bad := range []Config{
		{IGMPVersion: IGMPv1},
		{MLDVersion: IGMPv3},
		{QueryInterval: 500 * time.Millisecond},
		{QueryInterval: 5 * time.Second, QueryResponseInterval: 5 * time.Second},
		{IGMPVersion: IGMPv2, QueryResponseInterval: 30 * time.Second},
		{LastMemberQueryInterval: 10 * time.Millisecond},
		{Robustness: -1},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}
