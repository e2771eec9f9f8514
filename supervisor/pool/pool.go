package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/tracing"
)

// Worker slot states (controlproto.WorkerInfo.State).
//
//	spawn ──► starting ──first snapshot──► running
//	  ▲          │                            │
//	  │          │ exited or killed           │ exited or killed (silent
//	  │          ▼                            │ 3 intervals, broken stats)
//	  └─delay── backoff ◄─────────────────────┘
//	             │ Stop (from any state)
//	             ▼
//	          stopped
//
// The zero value is invalid; String is the name on the wire.
type SlotState uint8

const (
	_ SlotState = iota
	StateStarting
	StateRunning
	StateBackoff
	StateStopped
)

func (s SlotState) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateBackoff:
		return "backoff"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("SlotState(%d)", uint8(s))
}

// Health and restart timing, as docs/architecture.md describes it.
const (
	// healthPeriod is how often the pool looks for hung workers.
	healthPeriod = 250 * time.Millisecond
	// defaultMissedBeats is how many stats intervals a worker may stay
	// silent before it counts as hung and is killed.
	defaultMissedBeats = 3
	// startGrace is the least time a new worker gets to send its first
	// snapshot: a short --stats-interval must not kill workers that are
	// still setting up their rings and sockets on a loaded machine.
	startGrace = 5 * time.Second
	// minSilence is the least silence that counts as hung, whatever
	// --stats-interval says: under load this kernel can keep a core busy
	// with non-preemptible work for a second or two, and a short stats
	// interval must not turn such a stall into a restart and lost packets.
	minSilence = 2 * time.Second
	// DefaultStopTimeout is how long Stop waits for workers to exit after
	// Shutdown before it kills them.
	DefaultStopTimeout = 2 * time.Second
)

// queueLimit bounds a worker's command queue. A worker that stops reading
// its command socket makes its queue overflow; the queue is then dropped
// and replaced by one SyncRules, so the supervisor's memory stays bounded
// and the worker still ends up with the right ruleset.
type queueLimit struct {
	frames, bytes int
}

// defaultQueueLimit holds a burst of thousands of single-rule updates.
var defaultQueueLimit = queueLimit{frames: 8192, bytes: 8 << 20}

// Config configures a Pool. Zero values mean the documented defaults.
type Config struct {
	// Exe is the binary run as `Exe worker …`; "" = /proc/self/exe, the
	// running mcrd (also after the file on disk was replaced).
	Exe string
	// NumWorkers is the number of worker slots; 0 = len(CPUs).
	NumWorkers int
	// CPUs are the cores workers are pinned to, worker i to
	// CPUs[i%len(CPUs)]; empty = UsableCPUs().
	CPUs []int
	// Backend is passed to every worker as --backend; "" = "auto".
	Backend string
	// Fanout is how each input's packets are spread over the slots
	// (heldInputs); 0 = relaysock.FanoutHash.
	Fanout relaysock.Fanout
	// RingBlocks and RingTimeout are passed as --rx-ring-blocks (-1 as 0:
	// no ring) and --rx-ring-timeout when not 0; see worker.Config.
	RingBlocks  int
	RingTimeout time.Duration
	// RxRing, RingFrames and BusyPoll are passed as --rx-ring,
	// --rx-ring-frames and --busy-poll when set; see worker.Config.
	// RingFrames 0 is relaysock.DefaultFrames for NumWorkers.
	RxRing     string
	RingFrames int
	BusyPoll   bool
	// Moderation is passed as --rx-moderation when not 0; see
	// worker.Config.
	Moderation time.Duration
	// SocketRetry is passed as --socket-retry when not 0: how often
	// workers ask again for sockets that failed to open.
	SocketRetry time.Duration
	// StatsInterval is the workers' stats period, passed as
	// --stats-interval; 0 = 1s. A worker silent for 3 intervals is killed.
	StatsInterval time.Duration
	// Logger receives the pool's logs and the workers' re-emitted logs;
	// nil = slog.Default().
	Logger *slog.Logger
	// Aggregator, if set, observes every worker snapshot.
	Aggregator *stats.Aggregator
	// ExtraEnv is appended to the supervisor's environment for workers.
	ExtraEnv []string
	// Egress are the kernel steps of the egress sockets the pool holds
	// for the outputs; nil = the kernel's. Tests of what drives a pool
	// fake them.
	Egress *EgressOps
	// OnTrace, if set, gets the trace events of every worker snapshot
	// (traceSessions.ingest), from the workers' stats readers.
	OnTrace func([]tracing.Event)
	// WorkerUser is the account workers run as: a supervisor running as
	// root starts them with its uid and gid, no supplementary groups, no
	// capabilities and no_new_privs, and passes --user so that each
	// checks it before its loop. "" (or a supervisor that is not root):
	// workers keep the supervisor's credentials.
	WorkerUser string
}

// Pool runs the worker processes: it spawns one per slot, pinned to its
// core, keeps each one's ruleset equal to the pool's (AddRule/RemoveRule as
// rules change, SyncRules on every start and whenever a worker's reported
// hash stays wrong), feeds their stats to the aggregator, re-emits their
// logs, and restarts any that exit or hang, with backoff. It implements
// dataPlane. Its methods are safe for concurrent use.
//
// Each slot is run by one goroutine locked to its OS thread for the slot's
// whole life: the parent-death signal that kills workers with the
// supervisor is tied to the thread that forked them, not to the process
// (prctl(2) PR_SET_PDEATHSIG; golang/go#27505), so that thread must outlive
// every worker it spawns.
type Pool struct {
	cfg Config // defaults filled in by Start
	// cred is what workers run as (from cfg.WorkerUser); nil: the
	// supervisor's credentials.
	cred    *syscall.Credential
	log     *slog.Logger
	backoff backoffPolicy
	limit   queueLimit // of each worker's command queue
	// missedBeats is how many stats intervals a worker may stay silent,
	// and minSilence the least silence that counts (tests lower it).
	missedBeats int
	minSilence  time.Duration

	stop chan struct{}  // closed by Stop: no more restarts
	wg   sync.WaitGroup // slot runners and the health loop

	// inputs holds the workers' ingress sockets, per slot (set by Start).
	inputs *heldInputs

	// mu guards everything below, the fields of every slot, and the
	// fields of every workerProc marked as guarded by Pool.mu. It is held
	// only for bookkeeping, never across I/O or a wait.
	mu     sync.Mutex
	rules  map[string]poolRule // the ruleset every worker should hold
	hash   ruleset.SetHash     // of rules, maintained incrementally
	grants *relaysock.Grants   // the input sockets rules need, maintained with rules
	// egress holds the egress sockets of the rules' outputs, counted with
	// rules; it has a lock of its own, taken after mu.
	egress  *heldEgress
	slots   []*workerSlot
	state   poolState     // changed only by moveTo
	changed chan struct{} // closed and replaced when a slot's state changes
	// traceFrame is the latest WTrace command (SetTraces), sent after
	// every SyncRules; nil before the first.
	traceFrame []byte
}

// poolState is where a Pool is in its own life:
//
//	new ──Start──► started ──Stop──► stopping ──timeout──► killing
//	 │                                  │                     │
//	 └─────────Stop────────► stopped ◄──┴─all workers exited──┘
//
// The zero value is invalid: New starts a pool in poolNew.
type poolState uint8

const (
	_ poolState = iota
	// poolNew: before Start.
	poolNew
	// poolStarted: workers run and are restarted.
	poolStarted
	// poolStopping: Stop has sent Shutdown; no worker is restarted.
	poolStopping
	// poolKilling: Stop gave up waiting and kills the workers.
	poolKilling
	// poolStopped: Stop has ended, or ran before Start.
	poolStopped
)

func (s poolState) String() string {
	switch s {
	case poolNew:
		return "new"
	case poolStarted:
		return "started"
	case poolStopping:
		return "stopping"
	case poolKilling:
		return "killing"
	case poolStopped:
		return "stopped"
	}
	return fmt.Sprintf("poolState(%d)", uint8(s))
}

// stopping reports whether Stop has begun: workers get Shutdown, and none
// is restarted.
func (s poolState) stopping() bool { return s >= poolStopping && s <= poolStopped }

// can reports whether a pool in s may move to next.
func (s poolState) can(next poolState) bool {
	switch s {
	case poolNew:
		return next == poolStarted || next == poolStopped
	case poolStarted:
		return next == poolStopping
	case poolStopping:
		return next == poolKilling || next == poolStopped
	case poolKilling:
		return next == poolStopped
	}
	return false
}

// moveTo moves p to next, the one place p.state changes. p.mu must be
// held. A move the diagram does not have is a bug: it is logged, and p
// stays where it is.
func (p *Pool) moveTo(next poolState) {
	if !p.state.can(next) {
		p.log.Error("internal error: worker pool state change refused", "from", p.state.String(), "to", next.String())
		return
	}
	p.state = next
}

// poolRule is one rule of the pool's ruleset with its canonical encoding,
// kept so that removing the rule can take it out of the set hash.
type poolRule struct {
	rule controlproto.WorkerRule
	enc  []byte
}

// workerSlot is one worker position: a core and the succession of processes
// that run there. All fields but id and core are guarded by Pool.mu.
type workerSlot struct {
	id, core int

	state    SlotState
	proc     *workerProc // the live process; nil in backoff and stopped
	restarts int
	resyncs  int
	hash     string // ruleset hash of proc's latest snapshot
	backend  string // backend of proc's latest snapshot
	// mismatches counts proc's consecutive snapshots whose hash differed
	// from the pool's.
	mismatches int
}

// New returns a pool configured by cfg. Nothing runs until Start.
func New(cfg Config) *Pool {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	egress := kernelEgressOps()
	if cfg.Egress != nil {
		egress = *cfg.Egress
	}
	return &Pool{
		cfg:     cfg,
		log:     log,
		backoff: defaultBackoff,
		limit:   defaultQueueLimit,

		missedBeats: defaultMissedBeats,
		minSilence:  minSilence,
		stop:        make(chan struct{}),
		rules:       make(map[string]poolRule),
		grants:      relaysock.NewGrants(),
		egress:      newHeldEgress(log, egress),
		changed:     make(chan struct{}),
		state:       poolNew,
	}
}

// Start fills in the configuration's defaults and spawns all workers. It
// returns once every slot's runner is started; WaitAllRunning tells when
// the workers are up and hold the ruleset. Start fails on a configuration
// it cannot use, or when called twice.
func (p *Pool) Start() error {
	cfg, err := p.withDefaults()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != poolNew {
		return errors.New("start worker pool: already started or stopped")
	}
	if cfg.WorkerUser != "" {
		if os.Geteuid() != 0 {
			p.log.Warn("not running as root: workers keep the supervisor's credentials", "worker_user", cfg.WorkerUser)
			cfg.WorkerUser = ""
		} else if p.cred, err = workerCredential(cfg.WorkerUser); err != nil {
			return fmt.Errorf("start worker pool: %w", err)
		}
	}
	p.cfg = cfg
	p.moveTo(poolStarted)
	cores := make([]int, cfg.NumWorkers)
	for i := range cores {
		cores[i] = cfg.CPUs[i%len(cfg.CPUs)]
	}
	p.inputs = newHeldInputs(cfg.Fanout, cores, p.log, cfg.Aggregator)
	for i, core := range cores {
		s := &workerSlot{id: i, core: core, state: StateStarting}
		p.slots = append(p.slots, s)
		p.wg.Add(1)
		go p.runSlot(s)
	}
	p.wg.Add(1)
	go p.healthLoop()
	p.log.Info("worker pool started", "workers", cfg.NumWorkers, "cpus", cfg.CPUs, "fanout", cfg.Fanout.String(),
		"backend", cfg.Backend, "stats_interval", cfg.StatsInterval,
		"rx_ring", cfg.RxRing, "rx_ring_frames", cfg.RingFrames, "rx_ring_blocks", cfg.RingBlocks,
		"rx_ring_timeout", cfg.RingTimeout, "busy_poll", cfg.BusyPoll, "rx_moderation", moderationText(cfg.Moderation))
	return nil
}

// withDefaults returns p.cfg with its zero values replaced by defaults.
func (p *Pool) withDefaults() (Config, error) {
	cfg := p.cfg
	if cfg.Exe == "" {
		cfg.Exe = "/proc/self/exe"
	}
	if len(cfg.CPUs) == 0 {
		cpus, err := UsableCPUs()
		if err != nil {
			return cfg, fmt.Errorf("start worker pool: %w", err)
		}
		cfg.CPUs = cpus
	}
	if cfg.NumWorkers == 0 {
		cfg.NumWorkers = len(cfg.CPUs)
	}
	if cfg.NumWorkers < 0 {
		return cfg, fmt.Errorf("start worker pool: %d workers", cfg.NumWorkers)
	}
	if cfg.RingFrames == 0 {
		cfg.RingFrames = relaysock.DefaultFrames(cfg.NumWorkers)
	}
	if cfg.Backend == "" {
		cfg.Backend = "auto"
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = time.Second
	}
	if cfg.StatsInterval < 0 {
		return cfg, fmt.Errorf("start worker pool: stats interval %v", cfg.StatsInterval)
	}
	switch cfg.Fanout {
	case 0:
		cfg.Fanout = relaysock.FanoutHash
	case relaysock.FanoutHash, relaysock.FanoutCPU:
	default:
		return cfg, fmt.Errorf("start worker pool: fanout mode %v", cfg.Fanout)
	}
	return cfg, nil
}

// Stop shuts the pool down: every worker gets Shutdown, a worker still
// running after timeout is killed (SIGKILL), and Stop returns when all
// workers have exited and every goroutine and fd of the pool is gone.
// Workers are not restarted once Stop has begun. Stop may be called more
// than once, and before Start.
func (p *Pool) Stop(timeout time.Duration) {
	p.mu.Lock()
	if p.state != poolStarted {
		if p.state == poolNew {
			p.moveTo(poolStopped)
		}
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.moveTo(poolStopping)
	close(p.stop)
	for _, s := range p.slots {
		if s.proc != nil {
			s.proc.queue.shutdown()
		}
	}
	p.mu.Unlock()
	p.log.Info("stopping worker pool", "timeout", timeout)

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		p.mu.Lock()
		p.moveTo(poolKilling)
		for _, s := range p.slots {
			if s.proc != nil {
				s.proc.kill(fmt.Sprintf("did not shut down within %v", timeout))
			}
		}
		p.mu.Unlock()
		<-done
	}
	p.mu.Lock()
	p.moveTo(poolStopped)
	p.mu.Unlock()
	p.inputs.closeAll()
	p.egress.close()
	p.log.Info("worker pool stopped")
}

// Update implements dataPlane. Running workers get RemoveRule for each id
// of remove the pool holds, then AddRule for each rule of add; workers that
// start later get the result in SyncRules. Update keeps the rules of add:
// the caller must not modify them afterwards. It never blocks on a worker.
func (p *Pool) Update(add []controlproto.WorkerRule, remove []string) {
	// Encode outside the lock; the lock only does bookkeeping.
	addFrames := make([][]byte, len(add))
	addEncs := make([][]byte, len(add))
	for i := range add {
		frame, err := controlproto.AppendFrame(nil, controlproto.WorkerCommand{Type: controlproto.WAddRule, Rule: &add[i]})
		if err != nil {
			p.log.Error("rule not sent to workers", "rule", add[i].ID, "err", err)
			continue
		}
		addFrames[i], addEncs[i] = frame, add[i].Canonical()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	var frames [][]byte
	for _, id := range remove {
		old, ok := p.rules[id]
		if !ok {
			continue
		}
		p.hash.Remove(old.enc)
		p.grants.Remove(old.rule)
		p.egress.remove(old.rule)
		delete(p.rules, id)
		frame, err := controlproto.AppendFrame(nil, controlproto.WorkerCommand{Type: controlproto.WRemoveRule, ID: id})
		if err != nil {
			// A bare id always encodes; keep the workers honest anyway.
			p.log.Error("rule removal not sent to workers", "rule", id, "err", err)
			continue
		}
		frames = append(frames, frame)
	}
	for i := range add {
		if addFrames[i] == nil {
			continue
		}
		id := add[i].ID
		// The new rule's sockets are counted in before the old one's are
		// counted out, so that an output both have keeps its socket. A
		// socket the first output of an identity needs is opened here,
		// under mu: a few system calls that never wait, once per
		// identity, not per output.
		p.egress.add(add[i])
		if old, ok := p.rules[id]; ok {
			p.hash.Remove(old.enc)
			p.grants.Remove(old.rule)
			p.egress.remove(old.rule)
		}
		p.hash.Add(addEncs[i])
		p.grants.Add(add[i])
		p.rules[id] = poolRule{rule: add[i], enc: addEncs[i]}
		frames = append(frames, addFrames[i])
	}
	for _, s := range p.slots {
		if s.proc != nil && s.proc.queue.push(frames) {
			s.proc.log.Warn("worker command queue overflowed, replaced by SyncRules",
				"max_frames", p.limit.frames, "max_bytes", p.limit.bytes)
		}
	}
}

// Workers implements dataPlane: one entry per slot, in slot order. InSync
// is true when the slot's worker runs and its latest snapshot reported the
// hash of the pool's current ruleset.
func (p *Pool) Workers() []controlproto.WorkerInfo {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	want := p.hash.String()
	infos := make([]controlproto.WorkerInfo, len(p.slots))
	for i, s := range p.slots {
		infos[i] = controlproto.WorkerInfo{
			Worker:      s.id,
			Core:        s.core,
			State:       s.state.String(),
			Restarts:    s.restarts,
			RulesetHash: s.hash,
			InSync:      s.inSync(want),
			Resyncs:     s.resyncs,
			Backend:     s.backend,
		}
		if w := s.proc; w != nil {
			infos[i].PID = w.pid
			infos[i].UptimeS = now.Sub(w.started).Seconds()
		}
	}
	return infos
}

// inSync reports whether s runs and holds the ruleset hashing to want.
func (s *workerSlot) inSync(want string) bool {
	return s.state == StateRunning && s.hash == want
}

// WaitAllRunning waits until every worker is running and in sync with the
// pool's ruleset, or ctx ends. The supervisor calls it before telling
// systemd it is ready.
func (p *Pool) WaitAllRunning(ctx context.Context) error {
	for {
		p.mu.Lock()
		state, changed := p.state, p.changed
		want := p.hash.String()
		var waiting []string
		for _, s := range p.slots {
			if !s.inSync(want) {
				waiting = append(waiting, fmt.Sprintf("worker %d %s", s.id, s.state))
			}
		}
		p.mu.Unlock()
		switch {
		case state != poolStarted:
			return errors.New("wait for workers: pool is not running")
		case len(waiting) == 0:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for workers (%s): %w", strings.Join(waiting, ", "), ctx.Err())
		}
	}
}

// notifyLocked wakes WaitAllRunning. p.mu must be held.
func (p *Pool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// runSlot runs slot s until Stop: spawn a worker, supervise it until it
// exits, wait out the backoff, spawn again.
//
// The goroutine locks its OS thread and never unlocks it, so that the
// thread lives exactly as long as the slot: the kernel sends a child its
// parent-death signal when the *thread* that forked it exits (prctl(2):
// "the parent is considered to be the thread that created this process"),
// and an unlocked goroutine may fork from a thread the Go runtime later
// retires, killing a healthy worker (golang/go#27505). The thread is also
// pinned to the slot's core before forking, so each worker is born with its
// affinity, the Go runtime threads of its first instant included. When the
// goroutine returns, still locked, the runtime terminates the thread
// instead of reusing a pinned one.
func (p *Pool) runSlot(s *workerSlot) {
	defer p.wg.Done()
	runtime.LockOSThread() // never unlocked, see above
	log := p.log.With("worker", s.id)
	log.Debug("slot runner started", "core", s.core)
	defer log.Debug("slot runner stopped")
	if err := pinThread(s.core); err != nil {
		log.Warn("worker not pinned", "core", s.core, "err", err)
	}
	if p.cred != nil {
		if err := restrictSpawnThread(); err != nil {
			// Workers would run without no_new_privs: refuse to start them.
			log.Error("cannot restrict the thread that starts workers; slot stopped", "err", err)
			p.mu.Lock()
			s.state = StateStopped
			p.notifyLocked()
			p.mu.Unlock()
			return
		}
	}

	var failures int
	for lives := 0; ; lives++ {
		if lives > 0 {
			p.mu.Lock()
			s.restarts++
			p.mu.Unlock()
		}
		var healthy time.Duration
		w, err := p.spawn(s)
		if err != nil {
			log.Error("spawn worker", "err", err)
		} else {
			healthy = p.superviseLife(s, w)
		}
		delay := p.backoff.next(&failures, healthy)
		if !p.enterBackoff(s, delay, log) {
			return
		}
	}
}

// enterBackoff puts s in backoff for delay and waits it out. It returns
// false, with s stopped, when the pool stops first.
func (p *Pool) enterBackoff(s *workerSlot, delay time.Duration, log *slog.Logger) bool {
	p.mu.Lock()
	stopping := p.state.stopping()
	if !stopping {
		s.state = StateBackoff
		p.notifyLocked()
	}
	p.mu.Unlock()
	if !stopping {
		log.Info("restarting worker", "delay", delay)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-p.stop:
		}
		timer.Stop()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.state.stopping() {
		return true
	}
	s.state = StateStopped
	p.notifyLocked()
	log.Info("worker slot stopped")
	return false
}

// superviseLife runs one worker process w of slot s from its start to its
// exit: it installs w in the slot, queues SyncRules, runs w's command
// writer, stats reader and log reader, waits for the process and tears the
// life down. It returns how long w was running (0 if it never sent stats).
func (p *Pool) superviseLife(s *workerSlot, w *workerProc) (healthy time.Duration) {
	p.mu.Lock()
	s.proc = w
	s.state = StateStarting
	s.hash, s.backend, s.mismatches = "", "", 0
	w.lastBeat = w.started
	switch {
	case p.state == poolKilling:
		w.kill("pool is stopping")
	case p.state.stopping():
		w.queue.shutdown()
	default:
		w.queue.requestSync()
	}
	p.notifyLocked()
	p.mu.Unlock()
	w.log.Info("worker spawned", "core", s.core)

	var pipes sync.WaitGroup
	pipes.Add(4)
	go func() { defer pipes.Done(); p.serveSockets(w) }()
	go func() { defer pipes.Done(); p.writeCommands(w) }()
	go func() { defer pipes.Done(); p.readStats(s, w) }()
	go func() { defer pipes.Done(); p.readLogs(w) }()

	waitErr := w.cmd.Wait()
	p.inputs.takeDrops(s.id, w.log)

	p.mu.Lock()
	s.proc = nil
	s.state = StateBackoff
	w.queue.close()
	if !w.runningSince.IsZero() {
		healthy = time.Since(w.runningSince)
	}
	reason, stopping := w.killReason, p.state.stopping()
	p.notifyLocked()
	p.mu.Unlock()

	w.closeCommands()
	w.sockets.Close()
	w.drainPipes(&pipes)
	logExit(w.log, waitErr, reason, stopping, time.Since(w.started))
	return healthy
}

// logExit logs the end of a worker process once, with its exit status.
func logExit(log *slog.Logger, waitErr error, reason string, stopping bool, lived time.Duration) {
	attrs := []any{"uptime", lived.Round(time.Millisecond)}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		attrs = append(attrs, "status", "exit status 0")
	case errors.As(waitErr, &exitErr):
		attrs = append(attrs, "status", exitErr.ProcessState.String())
	default:
		attrs = append(attrs, "err", waitErr)
	}
	if reason != "" {
		attrs = append(attrs, "killed_because", reason)
	}
	if stopping && reason == "" && waitErr == nil {
		log.Info("worker exited", attrs...)
		return
	}
	log.Warn("worker exited", attrs...)
}

// healthLoop kills workers that stopped sending stats, every healthPeriod,
// until Stop.
func (p *Pool) healthLoop() {
	defer p.wg.Done()
	p.log.Debug("health loop started", "period", healthPeriod)
	defer p.log.Debug("health loop stopped")
	ticker := time.NewTicker(healthPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-ticker.C:
			p.checkHealth(now)
			p.inputs.sweep(now, p.inputUsed, p.settled)
		}
	}
}

// checkHealth kills every worker whose last snapshot (or start, before its
// first snapshot) is too old: p.missedBeats stats intervals but at least
// p.minSilence, and at least startGrace for a worker that never reported.
func (p *Pool) checkHealth(now time.Time) {
	limit := max(time.Duration(p.missedBeats)*p.cfg.StatsInterval, p.minSilence)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		w := s.proc
		if w == nil || w.killReason != "" {
			continue
		}
		allowed := limit
		if w.runningSince.IsZero() {
			allowed = max(limit, startGrace)
		}
		if silent := now.Sub(w.lastBeat); silent > allowed {
			w.kill(fmt.Sprintf("no stats for %v", silent.Round(time.Millisecond)))
		}
	}
}

// inputUsed reports whether a rule of the pool's ruleset uses input k.
func (p *Pool) inputUsed(k inputKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grants.Allow(relaysock.Request{Ingress: &relaysock.Ingress{IfIndex: k.ifindex, FanoutID: k.fanoutID}}) == nil
}

// settled reports whether every live worker holds the pool's ruleset: none
// still uses an input the ruleset dropped.
func (p *Pool) settled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := p.hash.String()
	for _, s := range p.slots {
		if s.proc != nil && !s.inSync(want) {
			return false
		}
	}
	return true
}

// observe takes one snapshot of worker w in slot s, received at now: it is
// w's heartbeat, its ruleset hash is compared with the pool's, and the
// aggregator gets it. A hash that stayed wrong for two snapshots although
// w had read every command before the first of them and got none since
// cannot be an update in flight: w gets SyncRules, counted in s.resyncs.
// While updates keep flowing, a wrong hash waits for a pause of one stats
// interval.
func (p *Pool) observe(s *workerSlot, w *workerProc, snap *stats.Snapshot, now time.Time) {
	snap.Worker, snap.PID = s.id, w.pid // the supervisor knows who it spawned
	p.passTraces(s, snap)
	if agg := p.cfg.Aggregator; agg != nil {
		agg.Observe(snap, now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.proc != w {
		return // the life ended while the snapshot was on its way
	}
	w.lastBeat = now
	s.hash, s.backend = snap.RulesetHash, snap.Backend
	if s.state == StateStarting {
		s.state = StateRunning
		w.runningSince = now
		w.log.Info("worker running", "backend", snap.Backend)
	}
	want := p.hash.String()
	// Asked under p.mu, which the writer holds to change q.state: a
	// write in progress shows there, a finished one in the socket's queue.
	// An error (the socket is closed: the life is ending) counts as not
	// read.
	read, _ := commandsRead(w.commands)
	settled := w.queue.settled(read)
	if s.hash == want {
		s.mismatches = 0
	} else {
		s.mismatches++
	}
	if s.mismatches >= 2 && settled {
		s.mismatches = 0
		s.resyncs++
		w.queue.requestSync()
		w.log.Warn("worker ruleset out of sync, resending SyncRules",
			"worker_hash", s.hash, "want_hash", want, "resyncs", s.resyncs)
	}
	p.notifyLocked()
}

// ruleSliceLocked returns the pool's ruleset as a slice. p.mu must be held.
func (p *Pool) ruleSliceLocked() []controlproto.WorkerRule {
	rules := make([]controlproto.WorkerRule, 0, len(p.rules))
	for _, r := range p.rules {
		rules = append(rules, r.rule)
	}
	return rules
}

// backoffPolicy is the restart delay policy: the first restart after a
// failure is immediate, each further consecutive one waits twice as long as
// the previous one, from first up to max, and a worker that ran healthy for
// resetAfter starts the count again.
type backoffPolicy struct {
	first, max, resetAfter time.Duration
}

// defaultBackoff is the restart policy (docs/architecture.md): immediate,
// then 250 ms doubling to 10 s, reset after 30 s healthy.
var defaultBackoff = backoffPolicy{first: 250 * time.Millisecond, max: 10 * time.Second, resetAfter: 30 * time.Second}

// next returns the delay before the restart that follows a worker exit,
// given *failures, the consecutive failures before it, which it updates,
// and how long the worker had been running healthy.
func (b backoffPolicy) next(failures *int, healthy time.Duration) time.Duration {
	if healthy >= b.resetAfter {
		*failures = 0
	}
	n := *failures
	*failures++
	if n == 0 {
		return 0
	}
	d := b.first
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// Holding is what a Pool holds for its ruleset, for checks against a
// model of it.
type Holding struct {
	Hash    string            // the ruleset's set hash
	RuleIDs []string          // the rules' ids, sorted
	Grants  *relaysock.Grants // the input sockets the rules need: the pool's own, to read before the next Update
	// Egress counts the outputs on each egress socket that has any.
	Egress map[relaysock.EgressKey]int
}

// Holding returns what p holds now.
func (p *Pool) Holding() Holding {
	var h Holding
	p.egress.mu.Lock()
	h.Egress = map[relaysock.EgressKey]int{}
	for k, s := range p.egress.byKey {
		if s.outputs > 0 {
			h.Egress[k] = s.outputs
		}
	}
	p.egress.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	h.Hash, h.RuleIDs, h.Grants = p.hash.String(), slices.Sorted(maps.Keys(p.rules)), p.grants
	return h
}

// moderationText is Config.Moderation as the pool logs it: negative is
// "off" (never nap), 0 the worker's default.
func moderationText(d time.Duration) string {
	switch {
	case d < 0:
		return "off"
	case d == 0:
		return "default"
	}
	return d.String()
}
