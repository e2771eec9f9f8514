package pool

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/supervisor/pool/pooltest"
)

// testStatsInterval is the fake workers' stats period (pooltest).
const testStatsInterval = pooltest.StatsInterval

// logRecord is a log record captured by logCapture, its attributes
// flattened to "group.key" → value.
type logRecord struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Attrs map[string]any
	Keys  []string // attribute keys in order, repeats included
}

// logCapture is a slog.Handler that keeps every record, for assertions.
type logCapture struct {
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
}

func newLogCapture() *logCapture {
	return &logCapture{mu: new(sync.Mutex), recs: new([]logRecord)}
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCapture{mu: c.mu, recs: c.recs, attrs: append(slices.Clip(c.attrs), as...)}
}

func (c *logCapture) WithGroup(string) slog.Handler { panic("logCapture: groups not supported") }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: map[string]any{}}
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			for _, g := range v.Group() {
				add(prefix+a.Key+".", g)
			}
			return
		}
		rec.Attrs[prefix+a.Key] = v.Any()
		rec.Keys = append(rec.Keys, prefix+a.Key)
	}
	for _, a := range c.attrs {
		add("", a)
	}
	r.Attrs(func(a slog.Attr) bool { add("", a); return true })
	c.mu.Lock()
	*c.recs = append(*c.recs, rec)
	c.mu.Unlock()
	return nil
}

// find returns the records with message msg whose attributes include
// every key and value of match.
func (c *logCapture) find(msg string, match map[string]any) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
	for _, r := range *c.recs {
		if r.Msg != msg {
			continue
		}
		ok := true
		for k, v := range match {
			if fmt.Sprint(r.Attrs[k]) != fmt.Sprint(v) {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func (c *logCapture) dump(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range *c.recs {
		t.Logf("%s %s %q %v", r.Time.Format("15:04:05.000"), r.Level, r.Msg, r.Attrs)
	}
}

// noRaceExitSleep stops the race detector in a -race fake worker from
// sleeping for a second when the process exits (its atexit_sleep_ms
// default), which would look like a slow shutdown.
const noRaceExitSleep = "GORACE=atexit_sleep_ms=0"

// testPool is a Pool of fake workers (this test binary) with its logs.
type testPool struct {
	*Pool
	logs *logCapture
}

// newTestPool returns an unstarted pool of n fake workers whose
// environment also has env. It is stopped at the end of the test; its logs
// are printed if the test failed.
func newTestPool(t *testing.T, n int, env ...string) *testPool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cpus, err := UsableCPUs()
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogCapture()
	p := New(Config{
		Exe:           exe,
		NumWorkers:    n,
		CPUs:          cpus,
		StatsInterval: testStatsInterval,
		Logger:        slog.New(logs),
		ExtraEnv:      append([]string{pooltest.WorkerEnv + "=1", noRaceExitSleep}, env...),
	})
	// On a loaded machine a pinned fake may miss a few beats; only the
	// test of hung workers wants them killed after 3.
	p.missedBeats = 15
	t.Cleanup(func() {
		p.Stop(DefaultStopTimeout)
		if t.Failed() {
			logs.dump(t)
		}
	})
	return &testPool{Pool: p, logs: logs}
}

func startTestPool(t *testing.T, n int, env ...string) *testPool {
	t.Helper()
	p := newTestPool(t, n, env...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPool) waitAllRunning(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitAllRunning(ctx); err != nil {
		t.Fatalf("%v; workers: %+v", err, p.Workers())
	}
}

// waitHash waits until every worker runs and reports hash want.
func (p *testPool) waitHash(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	netnstest.WaitFor(t, timeout, "every worker to report ruleset "+want, func() bool {
		for _, w := range p.Workers() {
			if w.State != StateRunning.String() || w.RulesetHash != want || !w.InSync {
				return false
			}
		}
		return true
	})
}

func fakeWorkerRule(id string, port int) controlproto.WorkerRule {
	return controlproto.WorkerRule{
		Rule: ruleset.Rule{
			ID:      id,
			Input:   ruleset.Input{Interface: "eth0", Group: "239.1.1.1", Port: port},
			Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: port}},
		},
		InputIfIndex:  2,
		FanoutID:      7,
		OutputIfIndex: []int{3},
	}
}

func fakeWorkerRules(n int) []controlproto.WorkerRule {
	rules := make([]controlproto.WorkerRule, n)
	for i := range rules {
		rules[i] = fakeWorkerRule(fmt.Sprintf("r%d", i), 1000+i)
	}
	return rules
}

func TestPoolSyncsRulesOnStart(t *testing.T) {
	p := newTestPool(t, 3)
	rules := fakeWorkerRules(3)
	p.Update(rules, nil) // before Start: the workers get it in SyncRules
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitAllRunning(t)

	want := controlproto.HashWorkerRules(rules)
	pids := map[int]bool{}
	for i, w := range p.Workers() {
		if w.PID <= 0 || pids[w.PID] {
			t.Errorf("worker %d: pid %d, want a distinct pid", i, w.PID)
		}
		pids[w.PID] = true
		got := controlproto.WorkerInfo{Worker: w.Worker, Core: w.Core, State: w.State,
			RulesetHash: w.RulesetHash, InSync: w.InSync, Backend: w.Backend}
		wantInfo := controlproto.WorkerInfo{Worker: i, Core: p.cfg.CPUs[i%len(p.cfg.CPUs)], State: StateRunning.String(),
			RulesetHash: want, InSync: true, Backend: "fake"}
		if diff := cmp.Diff(wantInfo, got); diff != "" {
			t.Errorf("worker %d (-want +got):\n%s", i, diff)
		}
		if w.UptimeS <= 0 {
			t.Errorf("worker %d: uptime %v", i, w.UptimeS)
		}
	}
}

func TestPoolUpdatesReachEveryWorker(t *testing.T) {
	p := startTestPool(t, 2)
	p.waitAllRunning(t)

	// 5,000 single-rule updates, as pipelined AddRule requests make them,
	// then removals and a replacement.
	const n = 5000
	rules := fakeWorkerRules(n)
	start := time.Now()
	for i := range rules {
		p.Update(rules[i:i+1], nil)
	}
	var removed []string
	for i := 0; i < n; i += 10 {
		removed = append(removed, rules[i].ID)
	}
	p.Update(nil, removed)
	replaced := fakeWorkerRule(rules[1].ID, 9999)
	p.Update([]controlproto.WorkerRule{replaced}, nil)

	final := []controlproto.WorkerRule{replaced}
	for i := range rules {
		if i%10 != 0 && i != 1 {
			final = append(final, rules[i])
		}
	}
	p.waitHash(t, 10*time.Second, controlproto.HashWorkerRules(final))
	elapsed := time.Since(start)
	t.Logf("%d single-rule updates in sync on 2 workers after %v (%.0f rules/s)", n, elapsed, n/elapsed.Seconds())
	for _, w := range p.Workers() {
		if w.Resyncs != 0 || w.Restarts != 0 {
			t.Errorf("worker %d: resyncs %d, restarts %d; want updates to arrive as AddRule/RemoveRule", w.Worker, w.Resyncs, w.Restarts)
		}
	}
}

func TestPoolRestartsKilledWorker(t *testing.T) {
	p := startTestPool(t, 2)
	rules := fakeWorkerRules(3)
	p.Update(rules, nil)
	p.waitAllRunning(t)

	victim := p.Workers()[0].PID
	killed := time.Now()
	if err := unix.Kill(victim, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	netnstest.WaitFor(t, 5*time.Second, "worker 0 to be replaced", func() bool {
		w := p.Workers()[0]
		return w.PID != victim && w.InSync
	})
	back := time.Now()
	p.waitHash(t, 5*time.Second, controlproto.HashWorkerRules(rules))
	exits := p.logs.find("worker exited", map[string]any{"worker": 0, "pid": victim, "status": "signal: killed"})
	if len(exits) != 1 {
		t.Fatalf("got %d 'worker exited' records with status 'signal: killed' for pid %d, want 1", len(exits), victim)
	}
	// How fast the kernel ends the process is not the pool's doing; from
	// its exit on, the pool has 1 s to have a replacement running and in
	// sync.
	exited := exits[0].Time
	t.Logf("kill -9 → exit seen after %v → back in sync after %v more", exited.Sub(killed), back.Sub(exited))
	if back.Sub(exited) > time.Second {
		t.Errorf("worker back running and in sync %v after it exited, want within 1s", back.Sub(exited))
	}
	got := p.Workers()
	if got[0].Restarts != 1 || got[1].Restarts != 0 {
		t.Errorf("restarts = %d, %d; want 1, 0", got[0].Restarts, got[1].Restarts)
	}
}

func TestPoolBacksOffRestarts(t *testing.T) {
	p := startTestPool(t, 1, pooltest.ExitEnv+"=3")
	const lives = 5
	netnstest.WaitFor(t, 15*time.Second, fmt.Sprintf("%d worker starts", lives), func() bool {
		return len(p.logs.find("worker spawned", nil)) >= lives
	})
	starts := p.logs.find("worker spawned", nil)
	restarts := p.logs.find("restarting worker", nil)
	// First restart immediate, then 250 ms doubling. The wait is at least
	// the delay; more only by the time a loaded machine takes to fork and
	// exec, bounded loosely here.
	const slack = 2 * time.Second
	for i, delay := range []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second} {
		if got := restarts[i].Attrs["delay"]; got != delay {
			t.Errorf("restart %d: delay %v, want %v", i+1, got, delay)
		}
		waited := starts[i+1].Time.Sub(restarts[i].Time)
		if waited < delay || waited > delay+slack {
			t.Errorf("restart %d: spawned %v after the exit, want %v (+ up to %v)", i+1, waited, delay, slack)
		}
	}
	if exits := p.logs.find("worker exited", map[string]any{"status": "exit status 3"}); len(exits) < lives-1 {
		t.Errorf("got %d 'worker exited' records with status 'exit status 3', want at least %d", len(exits), lives-1)
	}
	if w := p.Workers()[0]; w.Restarts < lives-1 {
		t.Errorf("restarts = %d, want at least %d", w.Restarts, lives-1)
	}
}

func TestBackoffPolicy(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		healthy []time.Duration // how long each life ran healthy
		want    []time.Duration
	}{
		{
			name:    "crash loop doubles to the cap",
			healthy: make([]time.Duration, 9),
			want:    []time.Duration{0, 250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second},
		},
		{
			name:    "30s healthy resets",
			healthy: []time.Duration{0, 0, 0, 30 * time.Second, 0},
			want:    []time.Duration{0, 250 * ms, 500 * ms, 0, 250 * ms},
		},
		{
			name:    "29s healthy does not reset",
			healthy: []time.Duration{0, 0, 29 * time.Second},
			want:    []time.Duration{0, 250 * ms, 500 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var failures int
			var got []time.Duration
			for _, h := range tt.healthy {
				got = append(got, defaultBackoff.next(&failures, h))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPoolReplacesOverflowingQueueBySyncRules(t *testing.T) {
	// The fake reads no command for 2 s while it keeps sending stats: the
	// socket fills, the writer blocks, and the pool's queue for it
	// overflows into one SyncRules. Update never waits for the worker.
	const stall = 2 * time.Second
	p := newTestPool(t, 1, pooltest.StallEnv+"="+stall.String())
	p.limit = queueLimit{frames: 100, bytes: 1 << 20}
	// Applying thousands of commands at once takes a -race fake a while;
	// it must not count as hung.
	p.cfg.StatsInterval = 500 * time.Millisecond
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitAllRunning(t)
	// The socket holds a few thousand small frames, the writer one batch
	// and the queue 100.
	rules := fakeWorkerRules(5000)
	var slowest time.Duration
	for i := range rules {
		start := time.Now()
		p.Update(rules[i:i+1], nil)
		slowest = max(slowest, time.Since(start))
	}
	if slowest > stall/2 {
		t.Errorf("an Update took %v while the worker did not read: it waited for the worker", slowest)
	}
	p.waitHash(t, 10*time.Second, controlproto.HashWorkerRules(rules))
	// It may overflow more than once before the socket is full.
	if got := p.logs.find("worker command queue overflowed, replaced by SyncRules", map[string]any{"worker": 0}); len(got) == 0 {
		t.Error("no overflow record")
	}
	if w := p.Workers()[0]; w.Resyncs != 0 || w.Restarts != 0 {
		t.Errorf("resyncs %d, restarts %d; want 0, 0", w.Resyncs, w.Restarts)
	}
}

func TestPoolKillsHungWorker(t *testing.T) {
	p := newTestPool(t, 2, pooltest.HangOnceEnv+"="+filepath.Join(t.TempDir(), "hang"))
	p.missedBeats = defaultMissedBeats
	p.minSilence = 0 // three of the test's short intervals
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	rules := fakeWorkerRules(2)
	p.Update(rules, nil)
	netnstest.WaitFor(t, 5*time.Second, "the hung worker to be restarted", func() bool {
		ws := p.Workers()
		return ws[0].Restarts+ws[1].Restarts == 1
	})
	p.waitHash(t, 5*time.Second, controlproto.HashWorkerRules(rules))
	kills := p.logs.find("killing worker", nil)
	if len(kills) != 1 || !strings.HasPrefix(fmt.Sprint(kills[0].Attrs["reason"]), "no stats for ") {
		t.Fatalf("got 'killing worker' records %v, want one with reason 'no stats for …'", kills)
	}
	if exits := p.logs.find("worker exited", map[string]any{"status": "signal: killed", "killed_because": kills[0].Attrs["reason"]}); len(exits) != 1 {
		t.Errorf("got %d matching 'worker exited' records, want 1", len(exits))
	}
}

func TestPoolResyncsWorkerOutOfSync(t *testing.T) {
	// The fakes ignore AddRule for "dropped": their hash stays wrong
	// until the pool notices and resends SyncRules, which carries it.
	p := newTestPool(t, 2, pooltest.DropAddEnv+"=dropped")
	rules := []controlproto.WorkerRule{fakeWorkerRule("base", 4000)}
	p.Update(rules, nil)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitAllRunning(t) // the initial SyncRules is applied: the next rule goes as AddRule
	rules = append(rules, fakeWorkerRule("dropped", 5000))
	p.Update(rules[1:], nil)
	p.waitHash(t, 5*time.Second, controlproto.HashWorkerRules(rules))
	for _, w := range p.Workers() {
		if w.Resyncs != 1 || w.Restarts != 0 {
			t.Errorf("worker %d: resyncs %d, restarts %d; want 1, 0", w.Worker, w.Resyncs, w.Restarts)
		}
	}
	if got := p.logs.find("worker ruleset out of sync, resending SyncRules", nil); len(got) != 2 {
		t.Errorf("got %d resync records, want 2", len(got))
	}
}

func TestPoolRestartsWorkerWithBrokenStats(t *testing.T) {
	p := startTestPool(t, 1, pooltest.GarbageOnceEnv+"="+filepath.Join(t.TempDir(), "garbage"))
	rules := fakeWorkerRules(1)
	p.Update(rules, nil)
	netnstest.WaitFor(t, 5*time.Second, "a restart", func() bool { return p.Workers()[0].Restarts == 1 })
	p.waitHash(t, 5*time.Second, controlproto.HashWorkerRules(rules))
	broken := p.logs.find("worker stats stream broken", map[string]any{"worker": 0})
	if len(broken) != 1 || !strings.Contains(fmt.Sprint(broken[0].Attrs["err"]), "decode snapshot") {
		t.Errorf("got 'worker stats stream broken' records %v, want one with a decode error", broken)
	}
}

func TestPoolReemitsWorkerLogs(t *testing.T) {
	cpus, err := UsableCPUs()
	if err != nil {
		t.Fatal(err)
	}
	core := cpus[len(cpus)-1]
	p := newTestPool(t, 1)
	p.cfg.CPUs = []int{core}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitAllRunning(t)
	pid := p.Workers()[0].PID
	var started, plain []logRecord
	netnstest.WaitFor(t, 5*time.Second, "the fake's log lines", func() bool {
		started = p.logs.find("fake worker started", nil)
		plain = p.logs.find("plain stderr line", nil)
		return len(started) == 1 && len(plain) == 1
	})

	rec := started[0]
	if rec.Level != slog.LevelInfo {
		t.Errorf("level = %v, want INFO", rec.Level)
	}
	if rec.Time.After(time.Now()) || time.Since(rec.Time) > time.Minute {
		t.Errorf("time = %v, want the worker's", rec.Time)
	}
	// The worker gets exactly its three fds and stderr (the log pipe),
	// and is born on its core.
	wantAttrs := map[string]any{
		"worker":   int64(0),
		"core":     int64(core),
		"backend":  "auto",
		"fds":      []any{"2:pipe", "3:socket", "4:pipe", "5:pipe", "6:socket"},
		"cpus":     fmt.Sprint([]int{core}),
		"nested.a": int64(1),
		"nested.b": "x",
	}
	wantKeys := []string{"worker", "core", "backend", "fds", "cpus", "nested.a", "nested.b"}
	gotAttrs := map[string]any{}
	for k, v := range rec.Attrs {
		gotAttrs[k] = v
	}
	if diff := cmp.Diff(wantAttrs, gotAttrs); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantKeys, rec.Keys); diff != "" {
		t.Errorf("attribute order (-want +got):\n%s", diff)
	}
	if plain[0].Level != slog.LevelWarn || fmt.Sprint(plain[0].Attrs["worker"]) != "0" {
		t.Errorf("stderr line re-emitted as %v %v, want WARN with worker=0", plain[0].Level, plain[0].Attrs)
	}
	if pid <= 0 {
		t.Fatalf("pid %d", pid)
	}
}

func TestPoolStopShutsWorkersDown(t *testing.T) {
	p := startTestPool(t, 2)
	p.waitAllRunning(t)
	start := time.Now()
	p.Stop(DefaultStopTimeout)
	if took := time.Since(start); took > time.Second {
		t.Errorf("Stop took %v for workers that obey Shutdown", took)
	}
	for i := range 2 {
		if got := p.logs.find("fake worker shutting down", map[string]any{"worker": i}); len(got) != 1 {
			t.Errorf("worker %d: got %d 'shutting down' records, want 1 (Shutdown received)", i, len(got))
		}
		if got := p.logs.find("worker exited", map[string]any{"worker": i, "status": "exit status 0"}); len(got) != 1 {
			t.Errorf("worker %d: got %d clean 'worker exited' records, want 1", i, len(got))
		}
	}
	for _, w := range p.Workers() {
		if w.State != StateStopped.String() || w.PID != 0 {
			t.Errorf("worker %d after Stop: state %s, pid %d", w.Worker, w.State, w.PID)
		}
	}
	if err := p.WaitAllRunning(context.Background()); err == nil {
		t.Error("WaitAllRunning after Stop succeeded")
	}
}

func TestPoolStopKillsAfterTimeout(t *testing.T) {
	p := startTestPool(t, 1, pooltest.IgnoreShutdownEnv+"=1")
	p.waitAllRunning(t)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	p.Stop(timeout)
	if took := time.Since(start); took < timeout || took > timeout+time.Second {
		t.Errorf("Stop(%v) took %v", timeout, took)
	}
	exits := p.logs.find("worker exited", map[string]any{"status": "signal: killed", "killed_because": "did not shut down within 300ms"})
	if len(exits) != 1 {
		t.Errorf("got %d 'worker exited' records for the SIGKILL after the timeout, want 1", len(exits))
	}
}

func TestPoolLeavesNoGoroutinesOrFDs(t *testing.T) {
	fdsBefore := pooltest.CountOpenFDs(t)
	goroutinesBefore := runtime.NumGoroutine()

	p := startTestPool(t, 2)
	rules := fakeWorkerRules(10)
	p.Update(rules, nil)
	p.waitAllRunning(t)
	if err := unix.Kill(p.Workers()[1].PID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	netnstest.WaitFor(t, 5*time.Second, "worker 1 restarted", func() bool { return p.Workers()[1].Restarts == 1 })
	p.waitHash(t, 5*time.Second, controlproto.HashWorkerRules(rules))
	p.Stop(DefaultStopTimeout)

	netnstest.WaitFor(t, 2*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutinesBefore })
	if fds := pooltest.CountOpenFDs(t); fds != fdsBefore {
		t.Errorf("%d fds open after Stop, %d before Start", fds, fdsBefore)
	}
}

// poolHelperEnv makes this test binary a supervisor stand-in: it runs a
// pool of two fake workers, prints their pids as one JSON line when they
// run, and waits to be killed.
const poolHelperEnv = "MCR_TEST_POOL_HELPER"

func init() {
	if os.Getenv(poolHelperEnv) == "1" {
		os.Exit(runPoolHelper())
	}
}

func runPoolHelper() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p := New(Config{Exe: exe, NumWorkers: 2, StatsInterval: testStatsInterval,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), ExtraEnv: []string{pooltest.WorkerEnv + "=1", noRaceExitSleep}})
	if err := p.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitAllRunning(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var pids []int
	for _, w := range p.Workers() {
		pids = append(pids, w.PID)
	}
	json.NewEncoder(os.Stdout).Encode(pids)
	select {}
}

// TestWorkersDieWithSupervisor kills -9 a process running a Pool and checks
// that its workers die with it (parent-death signal). It needs no
// privilege.
func TestWorkersDieWithSupervisor(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(exe)
	helper.Env = append(os.Environ(), poolHelperEnv+"=1")
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read worker pids from the helper: %v", err)
	}
	var pids []int
	if err := json.Unmarshal(line, &pids); err != nil || len(pids) != 2 {
		t.Fatalf("helper printed %q, want two pids", line)
	}
	for _, pid := range pids {
		if !pooltest.PidAlive(pid) {
			t.Fatalf("worker %d not running before the kill", pid)
		}
	}

	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	netnstest.WaitFor(t, 2*time.Second, "the workers to die with their supervisor", func() bool {
		return !pooltest.PidAlive(pids[0]) && !pooltest.PidAlive(pids[1])
	})
}
