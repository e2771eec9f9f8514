package supervisor

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// fakeDataPlane is a dataPlane that holds the ruleset it is told, and
// remembers which ids each Update touched.
type fakeDataPlane struct {
	mu      sync.Mutex
	rules   map[string]controlproto.WorkerRule
	touched [][]string // ids of each Update, added then removed
	workers []controlproto.WorkerInfo
}

func newFakeDataPlane() *fakeDataPlane {
	return &fakeDataPlane{rules: map[string]controlproto.WorkerRule{}}
}

func (f *fakeDataPlane) Update(add []controlproto.WorkerRule, remove []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, id := range remove {
		delete(f.rules, id)
		ids = append(ids, "-"+id)
	}
	for _, wr := range add {
		f.rules[wr.ID] = wr
		ids = append(ids, "+"+wr.ID)
	}
	f.touched = append(f.touched, ids)
}

func (f *fakeDataPlane) Workers() []controlproto.WorkerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.workers)
}

// rule returns what the data plane holds for id.
func (f *fakeDataPlane) rule(id string) (controlproto.WorkerRule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wr, ok := f.rules[id]
	return wr, ok
}

// ids returns the ids the data plane holds, sorted.
func (f *fakeDataPlane) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.rules))
}

// updates returns the ids each Update touched so far and forgets them.
func (f *fakeDataPlane) updates() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.touched
	f.touched = nil
	return u
}

// fakeKernel stands in for the kernel's multicast membership bookkeeping
// of helper sockets: a per-socket cap on groups (igmp_max_memberships), a
// per-group cap on sources (igmp_max_msf), no mixing of any-source and
// source-specific joins of one group on one socket, and chosen failures.
type fakeKernel struct {
	maxGroups  int
	maxSources int
	fail       map[netip.Addr]error // joins of these groups fail so
	open       int                  // sockets open now
	opened     int                  // sockets ever opened
}

func newFakeKernel(maxGroups, maxSources int) *fakeKernel {
	return &fakeKernel{maxGroups: maxGroups, maxSources: maxSources, fail: map[netip.Addr]error{}}
}

type fakeGroupSocket struct {
	k       *fakeKernel
	ifindex int
	v6      bool
	groups  map[netip.Addr]map[netip.Addr]bool // group → sources; {zero: true} = any source
	closed  bool
}

func (k *fakeKernel) openSocket(ifindex int, v6 bool) (groupSocket, error) {
	k.open++
	k.opened++
	return &fakeGroupSocket{k: k, ifindex: ifindex, v6: v6, groups: map[netip.Addr]map[netip.Addr]bool{}}, nil
}

func (s *fakeGroupSocket) join(g membership) error {
	switch {
	case s.closed:
		return syscall.EBADF
	case g.ifindex != s.ifindex || g.group.Is6() != s.v6:
		return fmt.Errorf("membership %v on the socket of ifindex %d v6=%v", g, s.ifindex, s.v6)
	case s.k.fail[g.group] != nil:
		return s.k.fail[g.group]
	}
	srcs := s.groups[g.group]
	if srcs == nil {
		if len(s.groups) >= s.k.maxGroups {
			return syscall.ENOBUFS
		}
		srcs = map[netip.Addr]bool{}
		s.groups[g.group] = srcs
	}
	anySource := srcs[netip.Addr{}]
	switch {
	case len(srcs) > 0 && anySource != !g.source.IsValid():
		return syscall.EINVAL // filter mode change
	case srcs[g.source]:
		return syscall.EADDRINUSE
	case g.source.IsValid() && len(srcs) >= s.k.maxSources:
		return syscall.ENOBUFS
	}
	srcs[g.source] = true
	return nil
}

func (s *fakeGroupSocket) leave(g membership) error {
	if !s.groups[g.group][g.source] {
		return syscall.EADDRNOTAVAIL
	}
	delete(s.groups[g.group], g.source)
	if len(s.groups[g.group]) == 0 {
		delete(s.groups, g.group)
	}
	return nil
}

func (s *fakeGroupSocket) close() error {
	if s.closed {
		return syscall.EBADF
	}
	s.closed = true
	s.k.open--
	return nil
}

// fakeFanout is a fanoutProbe over a set of ids in use.
type fakeFanout struct {
	busy   map[int]bool
	probes int
}

func (f *fakeFanout) probe(id int) (bool, error) {
	f.probes++
	return !f.busy[id], nil
}

// testLogger returns a logger into buf (or nowhere when buf is nil).
func testLogger(buf *syncbuf.Buffer) *slog.Logger {
	var w io.Writer = io.Discard
	if buf != nil {
		w = buf
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testMaster is a master over fakes.
type testMaster struct {
	*master
	t      testing.TB
	dp     *fakeDataPlane
	kernel *fakeKernel
	fanout *fakeFanout
	log    *syncbuf.Buffer
}

func newTestMaster(t testing.TB) *testMaster {
	t.Helper()
	tm := &testMaster{
		t:      t,
		dp:     newFakeDataPlane(),
		kernel: newFakeKernel(20, 10),
		fanout: &fakeFanout{busy: map[int]bool{}},
		log:    &syncbuf.Buffer{},
	}
	tm.master = newMaster(masterConfig{
		Log:    testLogger(tm.log),
		DP:     tm.dp,
		Stats:  stats.NewAggregator(time.Second),
		Groups: tm.kernel.openSocket,
		Fanout: newFanoutIDs(tm.fanout.probe, 4242),
	})
	return tm
}

// joined returns the memberships the master holds, as "group@ifindex" or
// "source>group@ifindex", sorted.
func (tm *testMaster) joined() []string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	var out []string
	for g := range tm.groups.held {
		s := fmt.Sprintf("%s@%d", g.group, g.ifindex)
		if g.source.IsValid() {
			s = g.source.String() + ">" + s
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// status returns rule id's state and error.
func (tm *testMaster) status(t *testing.T, id string) (state, err string) {
	t.Helper()
	for _, rs := range tm.list() {
		if rs.ID == id {
			return rs.State, rs.Error
		}
	}
	t.Fatalf("no rule %q", id)
	return "", ""
}

// rule returns a valid rule with input group:port on iface and one output
// on out.
func testRule(id, iface, group string, port int, out string) ruleset.Rule {
	return ruleset.Rule{
		ID:      id,
		Input:   ruleset.Input{Interface: iface, Group: group, Port: port},
		Outputs: []ruleset.Output{{Interface: out, Group: "239.9.9.9", Port: 9000}},
	}
}
