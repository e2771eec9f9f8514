package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
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
	log := cfg.Logger
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var initial ruleset.Config
	if cfg.ConfigPath != "" {
		c, err := readConfigFile(cfg.ConfigPath)
		if err != nil {
			return fmt.Errorf("load --config: %w", err)
		}
		initial = c
	}
	ln, err := listenControl(cfg.ControlSocket, log)
	if err != nil {
		return err
	}
	agg := stats.NewAggregator(cfg.StatsInterval)
	pool := NewPool(PoolConfig{
		Exe: cfg.WorkerExe, NumWorkers: cfg.NumWorkers, CPUs: cfg.CPUs, Backend: cfg.Backend,
		StatsInterval: cfg.StatsInterval, Logger: log, Aggregator: agg,
	})
	m := newMaster(masterConfig{
		Log: log, DP: pool, Stats: agg,
		Groups: openUDPGroupSocket, Fanout: newFanoutIDs(probeFanoutID, os.Getpid()),
	})
	defer func() {
		pool.Stop(DefaultStopTimeout)
		if err := m.close(); err != nil {
			log.Warn("leave groups", "err", err)
		}
	}()
	if err := pool.Start(); err != nil {
		ln.Close()
		return err
	}
	followCtx, stopFollowing := context.WithCancel(ctx)
	following, err := startLinkFollower(followCtx, m, log)
	if err != nil {
		stopFollowing()
		ln.Close()
		return err
	}
	defer func() { stopFollowing(); <-following }()
	res := m.replace(initial.Rules)
	if cfg.ConfigPath != "" {
		log.Info("config loaded", "from", cfg.ConfigPath, "added", res.Added)
	}

	d := &daemon{log: log, level: cfg.LogLevel, configPath: cfg.ConfigPath, master: m, dp: pool, stats: agg}
	srv := newServer(ln, d.handle, log)
	srv.start()
	defer srv.close() // runs first: no request changes anything during shutdown
	log.Info("mcrd supervisor ready", "control_socket", cfg.ControlSocket, "version", Version)
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case <-hup:
			d.reload()
		}
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

// reload reloads --config on SIGHUP.
func (d *daemon) reload() {
	if d.configPath == "" {
		d.log.Warn("SIGHUP ignored: mcrd runs without --config")
		return
	}
	c, err := readConfigFile(d.configPath)
	if err != nil {
		d.log.Error("reload config on SIGHUP; ruleset unchanged", "err", err)
		return
	}
	res := d.master.replace(c.Rules)
	d.log.Info("config reloaded on SIGHUP", "path", d.configPath,
		"added", res.Added, "removed", res.Removed, "unchanged", res.Unchanged)
}
