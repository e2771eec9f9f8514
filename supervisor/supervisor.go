package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/ingressdrop"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
	"github.com/mcrelay/mcr/supervisor/membership"
	"github.com/mcrelay/mcr/supervisor/pool"
	"github.com/mcrelay/mcr/supervisor/sdnotify"
	"github.com/mcrelay/mcr/supervisor/tuning"
	"github.com/mcrelay/mcr/tracing"
)

// Run is `mcrd supervisor`: it loads --config, opens the control socket,
// starts the workers, follows links over netlink, joins the input groups
// and serves operators until ctx ends or SIGTERM/SIGINT arrives. Then it
// stops the workers (SIGKILL after 2 s), leaves all groups, removes the
// socket and returns nil: a signalled shutdown is a clean exit. SIGHUP
// reloads --config as LoadConfig would (an invalid file is logged and
// changes nothing).
//
// Errors at start are returned and end the daemon: an invalid --config
// (naming the rule and field), a control socket in use by a running mcrd,
// missing privileges for netlink or the workers.
func Run(ctx context.Context, cfg Config) error {
	cfg = withDefaults(cfg)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	in, err := start(cfg)
	if err != nil {
		return err
	}
	defer in.stop()
	for {
		select {
		case <-ctx.Done():
			in.log.Info("shutting down")
			return nil
		case <-hup:
			in.reload()
		}
	}
}

// instance is one running daemon: what start started, which stop stops.
type instance struct {
	log  *slog.Logger
	d    *daemon
	pool *pool.Pool
	srv  *server

	// cancel ends the background goroutines (link follower, metrics
	// server, readiness, watchdog); background waits for them.
	cancel     context.CancelFunc
	background sync.WaitGroup
}

// start brings the daemon up: --config validated first, then the control
// socket and the metrics listener (so that a busy address fails before
// anything runs), the workers, the netlink follower (its first listing
// before the rules load, so they resolve at once), the rules, and the
// control server. systemd hears READY=1 once the workers run.
func start(cfg Config) (*instance, error) {
	log := cfg.Logger
	raw := probeRaw()
	for _, p := range []struct {
		family string
		err    error
	}{{"IPv4", raw.v4}, {"IPv6", raw.v6}} {
		if p.err != nil {
			log.Info("transparent outputs (preserve_source) unavailable", "family", p.family, "err", p.err)
		}
	}
	var initial ruleset.Config
	if cfg.ConfigPath != "" {
		c, err := readConfigFile(cfg.ConfigPath)
		if err == nil {
			err = raw.check("rules", c.Rules...)
		}
		if err != nil {
			return nil, fmt.Errorf("load --config: %w", err)
		}
		initial = c
		if target, err := saveTarget(cfg.ConfigPath); err == nil {
			for _, name := range removeStaleConfigTemps(target) {
				log.Info("removed a temporary config file a killed save left", "path", name)
			}
		}
	}
	ln, err := listenControl(cfg.ControlSocket, cfg.SocketGroup, log)
	if err != nil {
		return nil, err
	}
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = listenMetrics(cfg.MetricsListen); err != nil {
			ln.Close()
			return nil, err
		}
	}

	agg := stats.NewAggregator(cfg.StatsInterval)
	var traces *traceSessions
	pool := pool.New(pool.Config{
		OnTrace: func(evs []tracing.Event) { traces.ingest(evs) },
		Exe:     cfg.WorkerExe, NumWorkers: cfg.NumWorkers, CPUs: cfg.CPUs, Fanout: cfg.Fanout, Backend: cfg.Backend,
		StatsInterval: cfg.StatsInterval, Logger: log, Aggregator: agg, WorkerUser: cfg.WorkerUser,
		RingBlocks: cfg.RingBlocks, RingTimeout: cfg.RingTimeout, SocketRetry: cfg.SocketRetry,
		RxRing: cfg.RxRing, RingFrames: cfg.RingFrames, BusyPoll: cfg.BusyPoll, Moderation: cfg.Moderation,
	})
	mc := masterConfig{
		Log: log, DP: tuningCheck{pool, tuning.NewCheck(log)}, Stats: agg,
		Groups: membership.OpenUDP, Fanout: newFanoutIDs(probeFanoutID, os.Getpid()),
		Raw: raw,
	}
	if cfg.ExclusiveInputs {
		mc.Exclusive = ingressdrop.New()
	}
	if err := checkQueryInterval(cfg.QueryInterval); cfg.QueryInterval != 0 && err != nil {
		ln.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		return nil, fmt.Errorf("--query-interval: %w", err)
	}
	mc.Listeners = newListeners(listenerConfig{Open: openQuerier, Log: log, Queriers: cfg.Queriers, QueryInterval: cfg.QueryInterval})
	m := newMaster(mc)
	traces = newTraceSessions(log, pool.SetTraces, m.has)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{log: log, pool: pool, cancel: cancel,
		d: &daemon{log: log, level: cfg.LogLevel, configPath: cfg.ConfigPath, master: m, dp: pool, stats: agg,
			netSNMP: readNetSNMP, traces: traces}}
	fail := func(err error) (*instance, error) {
		ln.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		in.stop()
		return nil, err
	}
	if err := pool.Start(); err != nil {
		return fail(err)
	}
	following, err := links.Follow(ctx, m, log)
	if err != nil {
		return fail(err)
	}
	in.goBackground(func() { <-following })
	in.goBackground(func() { mc.Listeners.run(ctx, m) })
	m.setQuerierSettings(initial.Querier)
	if res := m.replace(initial.Rules); cfg.ConfigPath != "" {
		log.Info("config loaded", "from", cfg.ConfigPath, "added", res.Added)
	}
	if cfg.ConfigPath != "" && !cfg.NoConfigAutosave {
		in.d.autosave = newAutosaver(cfg.ConfigPath, log, m.encodedConfig)
		in.d.autosave.saved = m.currentVersion() // the file holds what it loaded
		log.Info("config autosave on: every change is saved before it is acknowledged", "path", cfg.ConfigPath)
	}
	in.srv = newServer(ln, in.d.serve, log)
	in.srv.connClosed = traces.connClosed
	in.srv.start()
	log.Info("serving the control socket", "path", cfg.ControlSocket, "version", Version)
	if metricsLn != nil {
		in.goBackground(func() {
			if err := serveMetrics(ctx, metricsLn, newMetricsHandler(in.d, Version), log); err != nil {
				log.Error("metrics endpoint", "err", err)
			}
		})
	}
	in.goBackground(func() { in.announceReady(ctx) })
	if interval, ok := sdnotify.WatchdogInterval(); ok {
		in.goBackground(func() { in.feedWatchdog(ctx, interval) })
	}
	return in, nil
}

func (in *instance) goBackground(f func()) {
	in.background.Add(1)
	go func() {
		defer in.background.Done()
		f()
	}()
}

// stop shuts the daemon down: systemd hears STOPPING=1, the control server
// closes (no request changes anything during shutdown; the socket file goes
// with it), the background goroutines end (no link event re-joins a group
// after this), the exclusive-input programs detach (the kernel receives the
// streams again while the workers still relay), the workers get Shutdown
// and SIGKILL after 2 s, and every group is left.
func (in *instance) stop() {
	if err := sdnotify.Stopping(); err != nil {
		in.log.Debug("notify systemd", "err", err)
	}
	if in.srv != nil {
		in.srv.close()
	}
	in.cancel()
	in.background.Wait()
	in.d.master.closeExclusive()
	if l := in.d.master.listeners; l != nil {
		l.close()
	}
	in.pool.Stop(pool.DefaultStopTimeout)
	if err := in.d.master.close(); err != nil {
		in.log.Warn("leave groups", "err", err)
	}
}

// reload reloads --config on SIGHUP, telling systemd RELOADING=1 before and
// READY=1 after.
func (in *instance) reload() {
	if err := sdnotify.Reloading(); err != nil {
		in.log.Debug("notify systemd", "err", err)
	}
	in.d.reload()
	if err := sdnotify.Ready(); err != nil {
		in.log.Debug("notify systemd", "err", err)
	}
}

// announceReady logs and tells systemd READY=1 once every worker runs.
func (in *instance) announceReady(ctx context.Context) {
	if err := in.pool.WaitAllRunning(ctx); err != nil {
		return // shutting down before the workers ran
	}
	in.log.Info("mcrd supervisor ready", "workers", len(in.pool.Workers()))
	if err := sdnotify.Ready(); err != nil {
		in.log.Warn("notify systemd", "err", err)
	}
}

// feedWatchdog tells systemd WATCHDOG=1 every half watchdog interval
// (sd_watchdog_enabled(3)), but only when the daemon is responsive: the
// control server answers a Ping on a connection of its own (server.check,
// which operator connections cannot crowd out) and the master ruleset's
// lock is free within a quarter interval. A wedged daemon stops feeding
// the watchdog, and systemd restarts it.
func (in *instance) feedWatchdog(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := in.healthy(ctx, interval/4); err != nil {
			in.log.Warn("watchdog not fed", "err", err)
			continue
		}
		if err := sdnotify.Watchdog(); err != nil {
			in.log.Warn("notify systemd", "err", err)
		}
	}
}

// healthy checks within timeout that the control server answers a Ping and
// that the master's lock can be taken.
func (in *instance) healthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := in.srv.check(ctx); err != nil {
		return err
	}
	locked := make(chan struct{})
	go func() {
		in.d.master.mu.Lock()
		//lint:ignore SA2001 taking the lock is the check
		in.d.master.mu.Unlock()
		close(locked)
	}()
	select {
	case <-locked:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("master ruleset lock held for more than %v", timeout)
	}
}

// withDefaults fills in cfg's zero values.
func withDefaults(cfg Config) Config {
	if cfg.ControlSocket == "" {
		cfg.ControlSocket = DefaultControlSocket
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = time.Second
	}
	if cfg.LogLevel == nil {
		cfg.LogLevel = new(slog.LevelVar)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	}
	return cfg
}

// reload reloads --config (SIGHUP).
func (d *daemon) reload() {
	if d.configPath == "" {
		d.log.Warn("SIGHUP ignored: mcrd runs without --config")
		return
	}
	c, err := readConfigFile(d.configPath)
	if err == nil {
		err = d.master.checkServable(c.Rules)
	}
	if err != nil {
		d.log.Error("reload config on SIGHUP; ruleset unchanged", "err", err)
		return
	}
	res := d.master.replace(c.Rules)
	d.master.setQuerierSettings(c.Querier)
	d.log.Info("config reloaded on SIGHUP", "path", d.configPath,
		"added", res.Added, "removed", res.Removed, "unchanged", res.Unchanged)
}
