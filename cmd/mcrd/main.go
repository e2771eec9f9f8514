// Command mcrd is the mcr daemon (docs/cli.md): `mcrd supervisor` runs the
// long-lived supervisor of package supervisor, which re-executes this binary
// as `mcrd worker` (hidden) once per worker, the data plane of package
// worker. `mcrd version` prints the build version.
//
// Exit status: 0 on success (also after SIGTERM/SIGINT), 1 on a runtime
// error, with the message on stderr, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/manpage"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/querier"
	"github.com/mcrelay/mcr/supervisor"
	"github.com/mcrelay/mcr/supervisor/pool"
	"github.com/mcrelay/mcr/worker"
)

const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// socketEnv overrides the default of --control-socket, as it does mcrctl's
// --socket.
const socketEnv = "MCR_SOCKET"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv, entryPoints{
		supervisor: supervisor.Run,
		worker:     worker.Run,
	}))
}

// entryPoints are what the subcommands run; tests replace them.
type entryPoints struct {
	supervisor func(context.Context, supervisor.Config) error
	worker     func(worker.Config) error
}

// runtimeError marks an error of a command's work, as opposed to cobra's
// usage errors (unknown commands or flags, bad flag values).
type runtimeError struct{ err error }

func (e runtimeError) Error() string { return e.err.Error() }

// run runs mcrd with args and returns its exit status. Signals are the
// supervisor's business (supervisor.Run handles SIGTERM, SIGINT, SIGHUP).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, entry entryPoints) int {
	root := rootCommand(stdout, stderr, getenv, entry)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var rerr runtimeError
	if errors.As(err, &rerr) {
		fmt.Fprintf(stderr, "mcrd: %v\n", rerr.err)
		return exitRuntime
	}
	fmt.Fprintf(stderr, "mcrd: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
	return exitUsage
}

func rootCommand(stdout, stderr io.Writer, getenv func(string) string, entry entryPoints) *cobra.Command {
	root := &cobra.Command{
		Use:               "mcrd",
		Short:             "mcr multicast relay daemon",
		Args:              cobra.NoArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(*cobra.Command, []string) error {
			return errors.New("missing command: supervisor or version")
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(supervisorCommand(stderr, getenv, entry.supervisor), workerCommand(entry.worker), versionCommand(stdout),
		manpage.Command(root, supervisor.Version))
	return root
}

// supervisorFlags are the flags of `mcrd supervisor` (docs/cli.md).
type supervisorFlags struct {
	numWorkers    int
	cpus          string
	fanout        string
	controlSocket string
	configPath    string
	backend       string
	ringBlocks    int
	ringTimeout   time.Duration
	rxRing        string
	ringFrames    int
	busyPoll      bool
	moderation    time.Duration
	statsInterval time.Duration
	logLevel      string
	logFormat     string
	metricsListen string
	workerUser    string
	socketGroup   string
	exclusive     bool
	socketRetry   time.Duration
	queriers      []string
	queryInterval time.Duration
	autosave      bool
}

func supervisorCommand(stderr io.Writer, getenv func(string) string, runSupervisor func(context.Context, supervisor.Config) error) *cobra.Command {
	var f supervisorFlags
	cmd := &cobra.Command{
		Use:   "supervisor",
		Short: "Run the daemon: control socket, workers, memberships",
		Long: `Run the mcr daemon: load --config, serve the control socket, spawn one
pinned worker per core and keep them running and in sync.

SIGTERM or SIGINT stops the workers, leaves the groups, removes the socket
and exits 0. SIGHUP reloads --config. With --config, every rule change is
saved to it before it is acknowledged (--config-autosave).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.supervisorConfig(stderr)
			if err != nil {
				return err // a usage error
			}
			if err := runSupervisor(cmd.Context(), cfg); err != nil {
				return runtimeError{err}
			}
			return nil
		},
	}
	socket := supervisor.DefaultControlSocket
	if env := getenv(socketEnv); env != "" {
		socket = env
	}
	fl := cmd.Flags()
	fl.IntVar(&f.numWorkers, "num-workers", 0, "workers to spawn (default: number of usable CPUs)")
	fl.StringVar(&f.cpus, "cpus", "", "cores to pin workers to, e.g. 0-3,8 (default: all usable)")
	fl.StringVar(&f.fanout, "fanout", "hash",
		"how an input's packets are spread over the workers: hash (each flow on one worker: never reordered) "+
			"or cpu (each packet to the worker pinned to the CPU that received it)")
	fl.StringVar(&f.controlSocket, "control-socket", socket, "operator socket path (env "+socketEnv+")")
	fl.StringVar(&f.configPath, "config", "", "rules file loaded at start, target of config save, reloaded on SIGHUP")
	fl.BoolVar(&f.autosave, "config-autosave", true,
		"save every rule change to --config before acknowledging it; false leaves the file to you (config save writes it)")
	fl.StringVar(&f.backend, "backend", worker.BackendAuto, "data plane I/O backend: auto, uring or mmsg")
	fl.StringVar(&f.rxRing, "rx-ring", worker.RingFrames,
		"kind of each input socket's receive ring: frames (TPACKET_V2: each packet handed over at once) "+
			"or blocks (TPACKET_V3: blocks handed over full or after --rx-ring-timeout)")
	fl.IntVar(&f.ringFrames, "rx-ring-frames", 0,
		"frames of 2 KiB in each input socket's frame ring, per worker (--rx-ring frames); 0 = 32768 / workers, from 4096 to 16384")
	fl.IntVar(&f.ringBlocks, "rx-ring-blocks", worker.DefaultRingBlocks,
		"blocks of 128 KiB in each input socket's block ring, per worker (--rx-ring blocks); 0 = no ring of either kind, one receive per packet")
	fl.DurationVar(&f.ringTimeout, "rx-ring-timeout", worker.DefaultRingTimeout,
		"longest a packet waits in a block of a block ring before it is handed over (1ms to 1s, whole ms)")
	fl.BoolVar(&f.busyPoll, "busy-poll", false,
		"workers spin on their rings instead of sleeping between packets: the lowest latency, for a whole core per worker")
	fl.DurationVar(&f.moderation, "rx-moderation", worker.DefaultModeration,
		"from 45,000 packets/s per worker, the longest a worker of a frame ring naps to collect a batch (0 to 10ms; 0 = never: "+
			"the lowest latency at high rates, for more CPU per packet)")
	fl.DurationVar(&f.statsInterval, "stats-interval", time.Second, "worker stats period")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "Prometheus /metrics listen address (default: off)")
	fl.StringVar(&f.workerUser, "worker-user", "nobody", "account the workers run as, without capabilities (ignored when not started as root)")
	fl.StringVar(&f.socketGroup, "socket-group", "", "group that owns the control socket; its members may use mcrctl (default: root's)")
	fl.BoolVar(&f.exclusive, "exclusive-inputs", false,
		"drop the relayed streams at each input interface's tc ingress, so the kernel's own receive path no longer spends CPU on them; "+
			"local applications on an input interface then stop receiving those groups (needs Linux 6.6+, CAP_BPF)")
	fl.StringSliceVar(&f.queriers, "querier", nil,
		"interfaces (comma-separated) where mcrd is the IGMP/MLD querier, for snooping switches on segments without a multicast router; "+
			"a lower-addressed querier on the link wins and mcrd falls silent")
	fl.DurationVar(&f.queryInterval, "query-interval", querier.DefaultQueryInterval,
		"time between the querier's general queries (1s to 8h49m4s; below the default for tests and labs only)")
	// For tests that wait for retries; the period is not an operator's
	// knob.
	fl.DurationVar(&f.socketRetry, "socket-retry", worker.DefaultSocketRetry,
		"how often workers ask again for sockets that failed to open")
	_ = fl.MarkHidden("socket-retry") // the flag exists: no error
	return cmd
}

// supervisorConfig checks the flags and builds the supervisor's configuration, with
// its logger on stderr.
func (f *supervisorFlags) supervisorConfig(stderr io.Writer) (supervisor.Config, error) {
	cfg := supervisor.Config{
		NumWorkers:    f.numWorkers,
		ControlSocket: f.controlSocket,
		ConfigPath:    f.configPath,
		Backend:       f.backend,
		RingBlocks:    ringBlocks(f.ringBlocks),
		RingTimeout:   f.ringTimeout,
		RxRing:        f.rxRing,
		RingFrames:    f.ringFrames,
		BusyPoll:      f.busyPoll,
		Moderation:    moderation(f.moderation),
		StatsInterval: f.statsInterval,
		MetricsListen: f.metricsListen,
		WorkerUser:    f.workerUser,
		SocketGroup:   f.socketGroup,
		LogLevel:      new(slog.LevelVar),
	}
	cfg.ExclusiveInputs = f.exclusive
	cfg.SocketRetry = f.socketRetry
	cfg.Queriers, cfg.QueryInterval = f.queriers, f.queryInterval
	if f.queryInterval < time.Second || f.queryInterval > querier.MaxQueryInterval {
		return cfg, fmt.Errorf("--query-interval %v: want 1s to %v", f.queryInterval, querier.MaxQueryInterval)
	}
	for _, name := range f.queriers {
		if name == "" {
			return cfg, errors.New("--querier: an empty interface name")
		}
	}
	cfg.NoConfigAutosave = !f.autosave
	if f.socketRetry <= 0 {
		return cfg, fmt.Errorf("--socket-retry %v: must be positive", f.socketRetry)
	}
	if f.workerUser == "" {
		return cfg, errors.New("--worker-user: must name an account")
	}
	if f.numWorkers < 0 {
		return cfg, fmt.Errorf("--num-workers %d: must be 0 (one per CPU) or more", f.numWorkers)
	}
	if f.cpus != "" {
		cpus, err := pool.ParseCPUList(f.cpus)
		if err != nil {
			return cfg, fmt.Errorf("--cpus: %w", err)
		}
		cfg.CPUs = cpus
	}
	fanout, err := relaysock.ParseFanout(f.fanout)
	if err != nil {
		return cfg, fmt.Errorf("--fanout: %w", err)
	}
	cfg.Fanout = fanout
	switch f.backend {
	case worker.BackendAuto, worker.BackendUring, worker.BackendMmsg:
	default:
		return cfg, fmt.Errorf("--backend %q: want auto, uring or mmsg", f.backend)
	}
	if f.ringBlocks < 0 {
		return cfg, fmt.Errorf("--rx-ring-blocks %d: want 0 (no ring) or more", f.ringBlocks)
	}
	if f.ringFrames < 0 {
		return cfg, fmt.Errorf("--rx-ring-frames %d: want 0 (32768 / workers) or more", f.ringFrames)
	}
	if f.moderation < 0 || f.moderation > worker.MaxModeration {
		return cfg, fmt.Errorf("--rx-moderation %v: want 0 (never nap) to %v", f.moderation, worker.MaxModeration)
	}
	if err := (worker.Config{RxRing: f.rxRing, RingFrames: f.ringFrames, RingBlocks: cfg.RingBlocks, RingTimeout: cfg.RingTimeout}).Check(); err != nil {
		return cfg, fmt.Errorf("--rx-ring %s, --rx-ring-frames %d, --rx-ring-blocks %d, --rx-ring-timeout %v: %w",
			f.rxRing, f.ringFrames, f.ringBlocks, f.ringTimeout, err)
	}
	if f.statsInterval <= 0 {
		return cfg, fmt.Errorf("--stats-interval %v: must be positive", f.statsInterval)
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	switch f.logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return cfg, fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	}
	return cfg, nil
}

// workerCommand is the hidden `mcrd worker`, which only the supervisor runs:
// its fds 3, 4, 5 and 6 must be the command socket, stats pipe, log pipe
// and socket socketpair.
func workerCommand(runWorker func(worker.Config) error) *cobra.Command {
	var cfg worker.Config
	var blocks int
	cmd := &cobra.Command{
		Use:    "worker",
		Short:  "Run one data plane worker (started by mcrd supervisor)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg.RingBlocks = ringBlocks(blocks)
			if err := runWorker(cfg); err != nil {
				return runtimeError{err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&cfg.ID, "id", 0, "worker slot number")
	fl.IntVar(&cfg.Core, "core", -1, "CPU to pin to; -1 leaves the affinity alone")
	fl.StringVar(&cfg.Backend, "backend", worker.BackendAuto, "I/O backend: auto, uring or mmsg")
	fl.DurationVar(&cfg.StatsInterval, "stats-interval", worker.DefaultStatsInterval, "stats and heartbeat period")
	fl.StringVar(&cfg.User, "user", "", "account the worker must run as, unprivileged; it refuses to run otherwise")
	fl.IntVar(&blocks, "rx-ring-blocks", worker.DefaultRingBlocks, "blocks in each input's receive ring; 0 = no ring")
	fl.DurationVar(&cfg.RingTimeout, "rx-ring-timeout", worker.DefaultRingTimeout, "receive ring block retire timeout")
	fl.StringVar(&cfg.RxRing, "rx-ring", worker.RingFrames, "receive ring kind: frames or blocks")
	fl.IntVar(&cfg.RingFrames, "rx-ring-frames", worker.DefaultRingFrames, "frames in each input's frame ring")
	fl.BoolVar(&cfg.BusyPoll, "busy-poll", false, "spin on the rings instead of sleeping")
	fl.DurationVar(&cfg.Moderation, "rx-moderation", worker.DefaultModeration, "longest nap of a frame ring under load; negative = never")
	fl.DurationVar(&cfg.SocketRetry, "socket-retry", worker.DefaultSocketRetry, "how often sockets that failed to open are asked for again")
	for _, name := range []string{"id", "core"} {
		_ = cmd.MarkFlagRequired(name) // the flags exist: no error
	}
	return cmd
}

// moderation maps the --rx-moderation flag, where 0 means never nap, to
// worker.Config.Moderation, where 0 is the default and never is negative.
func moderation(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// ringBlocks maps the --rx-ring-blocks flag, where 0 turns rings off, to
// worker.Config.RingBlocks, where 0 means the default and -1 no ring.
func ringBlocks(flag int) int {
	if flag == 0 {
		return -1
	}
	return flag
}

func versionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintln(stdout, versionLine())
		},
	}
}

// versionLine is `mcrd version`'s output: build version, commit, Go
// version and protocol version.
func versionLine() string {
	commit := supervisor.Commit
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	parts := []string{"mcrd " + supervisor.Version}
	if commit != "" {
		parts = append(parts, "commit "+commit)
	}
	parts = append(parts, runtime.Version(), fmt.Sprintf("protocol %d", controlproto.ProtocolVersion))
	return strings.Join(parts, ", ")
}
