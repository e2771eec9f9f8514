package supervisor

import (
	"log/slog"
	"time"
)

// Config is the supervisor's configuration, filled from `mcrd supervisor`
// flags (SPEC §3). Zero values mean the documented defaults.
type Config struct {
	// NumWorkers is the number of workers; 0 = number of usable CPUs.
	NumWorkers int
	// CPUs are the cores to pin workers to, worker i to CPUs[i%len(CPUs)];
	// empty = all usable CPUs (ParseCPUList parses "0-3,8").
	CPUs []int
	// ControlSocket is the operator socket path; "" = /run/mcr/control.sock.
	ControlSocket string
	// ConfigPath is the rules file loaded at start and on SIGHUP, and the
	// default target of SaveConfig; "" = none.
	ConfigPath string
	// NoConfigAutosave leaves ConfigPath alone after changes
	// (--config-autosave=false). By default every accepted AddRule,
	// RemoveRule and LoadConfig is saved to ConfigPath before its reply.
	NoConfigAutosave bool
	// Backend is the worker I/O backend: "auto" (default), "uring", "mmsg".
	Backend string
	// RingBlocks and RingTimeout shape each input socket's receive ring
	// (worker.Config): 0 = the worker's defaults; RingBlocks -1 = no ring.
	RingBlocks  int
	RingTimeout time.Duration
	// StatsInterval is the worker → supervisor stats period; 0 = 1s.
	StatsInterval time.Duration
	// LogLevel is the initial log level; SetLogLevel changes it at runtime.
	LogLevel *slog.LevelVar
	// Logger is where the supervisor logs (and re-emits worker logs).
	Logger *slog.Logger
	// MetricsListen is the Prometheus listen address; "" = off.
	MetricsListen string
	// WorkerExe is the binary re-executed as `WorkerExe worker …`;
	// "" = /proc/self/exe.
	WorkerExe string
	// WorkerUser is the account workers run as, without capabilities,
	// when the supervisor runs as root (mcrd's default: nobody); "" =
	// workers keep the supervisor's credentials. See docs/security.md.
	WorkerUser string
	// SocketGroup, when set, is the group that owns the control socket
	// (mode 0660): its members may connect. "" = the supervisor's group.
	SocketGroup string
	// ExclusiveInputs drops the relayed streams at each input interface's
	// tc ingress (package ingressdrop), so the kernel's own receive path
	// no longer sees them; local sockets on an input interface stop
	// receiving those streams. Needs tcx (Linux 6.6), CAP_BPF and
	// CAP_NET_ADMIN; where it cannot attach, mcrd logs a warning per
	// interface and relays without it. false (default) = off.
	ExclusiveInputs bool
	// SocketRetry is how often workers ask again for sockets that failed
	// to open; 0 = the workers' default (worker.DefaultSocketRetry).
	SocketRetry time.Duration
}

// DefaultControlSocket is where mcrd listens and mcrctl connects by default.
const DefaultControlSocket = "/run/mcr/control.sock"
