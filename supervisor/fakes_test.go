package supervisor

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/membership/membershiptest"
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
	kernel *membershiptest.Kernel
	fanout *fakeFanout
	log    *syncbuf.Buffer
}

func newTestMaster(t testing.TB) *testMaster {
	t.Helper()
	tm := &testMaster{
		t:      t,
		dp:     newFakeDataPlane(),
		kernel: membershiptest.NewKernel(20, 10),
		fanout: &fakeFanout{busy: map[int]bool{}},
		log:    &syncbuf.Buffer{},
	}
	tm.master = newMaster(masterConfig{
		Log:    testLogger(tm.log),
		DP:     tm.dp,
		Stats:  stats.NewAggregator(time.Second),
		Groups: tm.kernel.OpenSocket,
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
	for g := range tm.groups.All() {
		s := fmt.Sprintf("%s@%d", g.Addr, g.Ifindex)
		if g.Source.IsValid() {
			s = g.Source.String() + ">" + s
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
