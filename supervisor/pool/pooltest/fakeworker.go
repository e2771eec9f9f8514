package pooltest

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// The pool tests run this test binary as their worker: with WorkerEnv
// set, init turns the process into a fake worker that speaks the real
// worker protocol on fds 3, 4 and 5, before the testing package starts. The
// fake holds a ruleset like a worker does and reports its hash, so the
// tests exercise the pool's protocol, restart and resync logic without
// root or a data plane. Environment knobs make it misbehave:
const (
	WorkerEnv = "MCR_TEST_FAKE_WORKER" // "1": be a fake worker
	// ExitEnv: exit at once with this status.
	ExitEnv = "MCR_TEST_FAKE_EXIT"
	// HangOnceEnv: the first fake to create this file sends one
	// snapshot, then neither reads commands nor sends stats.
	HangOnceEnv = "MCR_TEST_FAKE_HANG_ONCE"
	// GarbageOnceEnv: the first fake to create this file writes a
	// frame that is not a snapshot after its first snapshot.
	GarbageOnceEnv = "MCR_TEST_FAKE_GARBAGE_ONCE"
	// DropAddEnv: ignore AddRule commands for this rule id (SyncRules
	// still carries it).
	DropAddEnv = "MCR_TEST_FAKE_DROP_ADD"
	// IgnoreShutdownEnv: "1": ignore Shutdown.
	IgnoreShutdownEnv = "MCR_TEST_FAKE_IGNORE_SHUTDOWN"
	// StallEnv: a duration to wait before reading commands, while
	// stats go on.
	StallEnv = "MCR_TEST_FAKE_STALL"
)

// StatsInterval is the fake workers' stats period: short, so that
// heartbeats and resyncs happen quickly, and long enough for a loaded
// 2-core machine.
const StatsInterval = 200 * time.Millisecond

// RunIfWorker turns the process into a fake worker, and never returns,
// when WorkerEnv is "1". A test package that runs its test binary as
// workers calls it from init, before the testing package starts.
func RunIfWorker() {
	if os.Getenv(WorkerEnv) == "1" {
		os.Exit(runFakeWorker(os.Args[1:]))
	}
}

// fakeWorker is the state of a fake worker process.
type fakeWorker struct {
	id    int
	stats *os.File
	log   *slog.Logger

	mu    sync.Mutex
	asm   controlproto.SyncAssembler
	rules map[string][]byte // id → canonical encoding
	hash  ruleset.SetHash
	seq   uint64
}

func runFakeWorker(args []string) int {
	fds := openFDs() // before the runtime or flag parsing opens anything
	if code := os.Getenv(ExitEnv); code != "" {
		var n int
		fmt.Sscan(code, &n)
		return n
	}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	id := fs.Int("id", -1, "")
	core := fs.Int("core", -1, "")
	backend := fs.String("backend", "", "")
	interval := fs.Duration("stats-interval", 0, "")
	fs.String("user", "", "")
	fs.Duration("socket-retry", 0, "")
	// The receive ring's flags, which the pool passes when set (and
	// --rx-ring-frames always): a fake has no rings.
	fs.String("rx-ring", "", "")
	fs.Int("rx-ring-frames", 0, "")
	fs.Int("rx-ring-blocks", 0, "")
	fs.Duration("rx-ring-timeout", 0, "")
	fs.Duration("rx-moderation", 0, "")
	fs.Bool("busy-poll", false, "")
	if len(args) == 0 || args[0] != "worker" || fs.Parse(args[1:]) != nil || *interval <= 0 {
		fmt.Fprintf(os.Stderr, "fake worker: bad arguments %q\n", args)
		return 2
	}
	w := &fakeWorker{
		id:    *id,
		stats: os.NewFile(controlproto.StatsFD, "stats"),
		log:   slog.New(slog.NewJSONHandler(os.NewFile(controlproto.LogFD, "log"), nil)),
		rules: map[string][]byte{},
	}
	var set unix.CPUSet
	unix.SchedGetaffinity(0, &set)
	var cpus []int
	for c := 0; len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	w.log.Info("fake worker started", "core", *core, "backend", *backend, "fds", fds, "cpus", fmt.Sprint(cpus),
		"worker", "ignored", "nested", map[string]any{"a": 1, "b": "x"})
	os.Stderr.WriteString("plain stderr line\n")

	hang := createdFirst(os.Getenv(HangOnceEnv))
	w.sendSnapshot()
	if createdFirst(os.Getenv(GarbageOnceEnv)) {
		controlproto.WriteFrame(w.stats, []int{1, 2, 3})
	}
	if hang {
		select {}
	}
	go func() {
		for range time.Tick(*interval) {
			w.sendSnapshot()
		}
	}()
	if stall, err := time.ParseDuration(os.Getenv(StallEnv)); err == nil {
		time.Sleep(stall)
	}
	return w.serveCommands()
}

// openFDs lists the open fds below 64 that are pipes or sockets, as
// "fd:kind". The Go runtime opens files of its own at start (cgroup CPU
// limits, /dev/null), but no pipe or socket: any beyond 2 to 5 would have
// leaked from the supervisor.
func openFDs() []string {
	var fds []string
	for fd := range 64 {
		target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			continue
		}
		if kind, _, ok := strings.Cut(target, ":["); ok && (kind == "pipe" || kind == "socket") {
			fds = append(fds, fmt.Sprintf("%d:%s", fd, kind))
		}
	}
	return fds
}

// createdFirst reports whether path is set and this process created it.
func createdFirst(path string) bool {
	if path == "" {
		return false
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func (w *fakeWorker) sendSnapshot() {
	w.mu.Lock()
	w.seq++
	snap := stats.Snapshot{
		Worker: w.id, PID: os.Getpid(), Seq: w.seq, UnixNano: time.Now().UnixNano(),
		RulesetHash: w.hash.String(), Backend: "fake",
		Counters: stats.WorkerCounters{RxPackets: w.seq},
	}
	w.mu.Unlock()
	controlproto.WriteFrame(w.stats, snap)
}

// serveCommands applies commands until Shutdown or the end of the socket.
// Like a real worker, whose event loop handles a command read before it
// builds the next snapshot, it sends no snapshot between reading a command
// and applying it.
func (w *fakeWorker) serveCommands() int {
	fr := controlproto.NewFrameReader(os.NewFile(controlproto.CommandFD, "commands"))
	for {
		body, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return 1 // the supervisor is gone
		}
		if err != nil {
			w.log.Error("read command", "err", err)
			return 1
		}
		w.mu.Lock()
		exit, stop := w.handle(body)
		w.mu.Unlock()
		if stop {
			return exit
		}
	}
}

// handle decodes and applies one command; stop tells the process to exit
// with status exit. w.mu must be held.
func (w *fakeWorker) handle(body []byte) (exit int, stop bool) {
	var cmd controlproto.WorkerCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		w.log.Error("decode command", "err", err)
		return 1, true
	}
	switch cmd.Type {
	case controlproto.WAddRule:
		if cmd.Rule.ID != os.Getenv(DropAddEnv) {
			w.add(*cmd.Rule)
		}
	case controlproto.WRemoveRule:
		w.remove(cmd.ID)
	case controlproto.WSyncRules:
		rules, done, err := w.asm.Add(&cmd)
		if err != nil {
			w.log.Error("sync rules", "err", err)
		}
		if done {
			for id := range w.rules {
				w.remove(id)
			}
			for _, r := range rules {
				w.add(r)
			}
		}
	case controlproto.WShutdown:
		if os.Getenv(IgnoreShutdownEnv) != "1" {
			w.log.Info("fake worker shutting down")
			return 0, true
		}
	}
	return 0, false
}

func (w *fakeWorker) add(r controlproto.WorkerRule) {
	w.remove(r.ID)
	enc := r.Canonical()
	w.rules[r.ID] = enc
	w.hash.Add(enc)
}

func (w *fakeWorker) remove(id string) {
	if enc, ok := w.rules[id]; ok {
		w.hash.Remove(enc)
		delete(w.rules, id)
	}
}

// CountOpenFDs returns how many fds this process has open, for tests that
// check nothing leaks.
func CountOpenFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// PidAlive reports whether pid exists and is not a zombie (an orphan
// may wait for a reaper that never comes in a container).
func PidAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}
