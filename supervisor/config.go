package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// Config is the supervisor's configuration, filled from `mcrd supervisor`
// flags (docs/cli.md). Zero values mean the documented defaults.
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
	// Fanout is how an input's packets are spread over the workers:
	// relaysock.FanoutHash (default when 0) keeps each flow on one worker,
	// so the relay never reorders it; relaysock.FanoutCPU hands a packet to
	// the worker pinned to the CPU that received it. See the operator
	// guide's "Fanout modes".
	Fanout relaysock.Fanout
	// RingBlocks and RingTimeout shape each input socket's receive ring
	// (worker.Config): 0 = the worker's defaults; RingBlocks -1 = no ring.
	RingBlocks  int
	RingTimeout time.Duration
	// RxRing ("" = the worker's default, frames), RingFrames (0 =
	// relaysock.DefaultFrames for the number of workers) and BusyPoll: see worker.Config.
	RxRing     string
	RingFrames int
	BusyPoll   bool
	// Moderation: see worker.Config (0 = the worker's default, negative
	// = never nap).
	Moderation time.Duration
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
	// Queriers are the interfaces where the relay is an IGMP/MLD querier
	// (--querier): it queries while it wins the election. On every
	// output interface it listens either way. Empty = querier nowhere.
	Queriers []string
	// QueryInterval is the querier's general query interval
	// (--query-interval); 0 = 125 s. At least 1 s: short intervals are
	// for tests and labs.
	QueryInterval time.Duration
}

// DefaultControlSocket is where mcrd listens and mcrctl connects by default.
const DefaultControlSocket = "/run/mcr/control.sock"

// maxConfigSize bounds a config file read by --config, SIGHUP, LoadConfig
// and CheckConfig. The budget is 100,000 rules: SaveConfig writes
// 1,358 bytes for the longest reasonable rule (a 64-character id, a
// 128-character name, a source-specific IPv6 input and four IPv6 outputs
// with source and ttl, on 15-character interface names, indented), so
// such a config is 136 MB (TestMaxConfigSizeHolds100kRules measures it).
// The bound leaves almost twice that, and keeps a path such as /dev/zero
// or a runaway file from growing the daemon's memory without end.
const maxConfigSize = 256 << 20

// readConfigData returns the contents of the config file at path. It
// refuses what is not a regular file (a directory, FIFO, device or socket)
// before reading anything — the open does not wait for a FIFO's writer —
// and a file larger than maxConfigSize.
func readConfigData(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file but %s", path, describeMode(fi.Mode()))
	}
	tooLarge := fmt.Errorf("%s is larger than %d MiB, the limit (a config of 100,000 rules is about half of it)",
		path, maxConfigSize>>20)
	if fi.Size() > maxConfigSize {
		return nil, tooLarge
	}
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfigSize+1)); err != nil {
		return nil, err
	}
	if buf.Len() > maxConfigSize { // it grew while being read
		return nil, tooLarge
	}
	return buf.Bytes(), nil
}
