package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/supervisor"
	"github.com/mcrelay/mcr/worker"
)

// result is what one run of mcrd did.
type result struct {
	code           int
	stdout, stderr string
	super          *supervisor.Config // what supervisor.Run got, if called
	worker         *worker.Config     // what worker.Run got, if called
}

// runMcrd runs mcrd with args and env; the entry points record their
// configuration and return err.
func runMcrd(t *testing.T, args []string, env map[string]string, err error) result {
	t.Helper()
	var res result
	var stdout, stderr bytes.Buffer
	entry := entryPoints{
		supervisor: func(_ context.Context, cfg supervisor.Config) error {
			res.super = &cfg
			return err
		},
		worker: func(cfg worker.Config) error {
			res.worker = &cfg
			return err
		},
	}
	res.code = run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] }, entry)
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res
}

func TestSupervisorFlags(t *testing.T) {
	defaults := supervisor.Config{
		ControlSocket: supervisor.DefaultControlSocket,
		Backend:       "auto",
		Fanout:        relaysock.FanoutHash,
		RingBlocks:    64,
		RingTimeout:   time.Millisecond,
		RxRing:        "frames",
		RingFrames:    0,
		Moderation:    time.Millisecond,
		StatsInterval: time.Second,
		WorkerUser:    "nobody",
		SocketRetry:   5 * time.Second,
		QueryInterval: 125 * time.Second,
	}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      func(c *supervisor.Config)
		wantLevel slog.Level
	}{
		{name: "defaults", want: func(*supervisor.Config) {}},
		{
			name: "every flag",
			args: []string{"--num-workers", "3", "--cpus", "0-1,3", "--control-socket", "/tmp/s.sock",
				"--config", "/etc/mcr.json", "--backend", "mmsg", "--stats-interval", "250ms",
				"--log-level", "debug", "--log-format", "json", "--metrics-listen", ":9100",
				"--worker-user", "mcr", "--socket-group", "mcradm", "--rx-ring-blocks", "16", "--rx-ring-timeout", "4ms",
				"--exclusive-inputs", "--config-autosave=false", "--fanout", "cpu",
				"--querier", "eth1,eth2", "--query-interval", "1s",
				"--rx-ring", "blocks", "--rx-ring-frames", "16384", "--busy-poll", "--rx-moderation", "200us"},
			want: func(c *supervisor.Config) {
				c.NumWorkers, c.CPUs, c.ControlSocket, c.ConfigPath = 3, []int{0, 1, 3}, "/tmp/s.sock", "/etc/mcr.json"
				c.Backend, c.StatsInterval, c.MetricsListen = "mmsg", 250*time.Millisecond, ":9100"
				c.WorkerUser, c.SocketGroup = "mcr", "mcradm"
				c.RingBlocks, c.RingTimeout = 16, 4*time.Millisecond
				c.RxRing, c.RingFrames, c.BusyPoll, c.Moderation = "blocks", 16384, true, 200*time.Microsecond
				c.ExclusiveInputs = true
				c.NoConfigAutosave = true
				c.Fanout = relaysock.FanoutCPU
				c.Queriers, c.QueryInterval = []string{"eth1", "eth2"}, time.Second
			},
			wantLevel: slog.LevelDebug,
		},
		{
			name: "--rx-moderation 0 never naps",
			args: []string{"--rx-moderation", "0"},
			want: func(c *supervisor.Config) { c.Moderation = -1 },
		},
		{
			name: "hidden --socket-retry for tests",
			args: []string{"--socket-retry", "200ms"},
			want: func(c *supervisor.Config) { c.SocketRetry = 200 * time.Millisecond },
		},
		{
			name: "--rx-ring-blocks 0 turns receive rings off",
			args: []string{"--rx-ring-blocks", "0"},
			want: func(c *supervisor.Config) { c.RingBlocks = -1 },
		},
		{
			name: "MCR_SOCKET sets the default socket",
			env:  map[string]string{"MCR_SOCKET": "/run/other.sock"},
			want: func(c *supervisor.Config) { c.ControlSocket = "/run/other.sock" },
		},
		{
			name: "--control-socket beats MCR_SOCKET",
			args: []string{"--control-socket", "/tmp/flag.sock"},
			env:  map[string]string{"MCR_SOCKET": "/run/other.sock"},
			want: func(c *supervisor.Config) { c.ControlSocket = "/tmp/flag.sock" },
		},
		{
			name:      "log level is case-insensitive",
			args:      []string{"--log-level", "WARN"},
			want:      func(*supervisor.Config) {},
			wantLevel: slog.LevelWarn,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runMcrd(t, append([]string{"supervisor"}, tt.args...), tt.env, nil)
			if res.code != exitOK || res.super == nil {
				t.Fatalf("exit %d, stderr %q; want 0 and supervisor.Run called", res.code, res.stderr)
			}
			want := defaults
			tt.want(&want)
			if diff := cmp.Diff(want, *res.super, cmpopts.IgnoreFields(supervisor.Config{}, "Logger", "LogLevel")); diff != "" {
				t.Errorf("supervisor.Config (-want +got):\n%s", diff)
			}
			if res.super.Logger == nil || res.super.LogLevel == nil || res.super.LogLevel.Level() != tt.wantLevel {
				t.Errorf("logger %v, level %v; want a logger at %v", res.super.Logger, res.super.LogLevel, tt.wantLevel)
			}
		})
	}
}

func TestSupervisorLogFormat(t *testing.T) {
	tests := []struct{ format, want string }{
		{"text", `level=INFO msg=hello`},
		{"json", `"level":"INFO","msg":"hello"`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var stderr bytes.Buffer
			var cfg supervisor.Config
			entry := entryPoints{supervisor: func(_ context.Context, c supervisor.Config) error {
				cfg = c
				return nil
			}}
			if code := run(context.Background(), []string{"supervisor", "--log-format", tt.format}, &bytes.Buffer{}, &stderr,
				func(string) string { return "" }, entry); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			cfg.Logger.Info("hello")
			cfg.Logger.Debug("hidden at the default level")
			if got := stderr.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "hidden") {
				t.Errorf("log output %q, want a record with %q and no debug record", got, tt.want)
			}
		})
	}
}

func TestWorkerFlags(t *testing.T) {
	res := runMcrd(t, []string{"worker", "--id", "2", "--core", "1", "--backend", "uring", "--stats-interval", "500ms", "--user", "nobody",
		"--busy-poll"}, nil, nil)
	if res.code != exitOK || res.worker == nil {
		t.Fatalf("exit %d, stderr %q; want 0 and worker.Run called", res.code, res.stderr)
	}
	want := worker.Config{ID: 2, Core: 1, Backend: "uring", StatsInterval: 500 * time.Millisecond, User: "nobody",
		RingBlocks: 64, RingTimeout: time.Millisecond, SocketRetry: 5 * time.Second,
		RxRing: "frames", RingFrames: 16384, BusyPoll: true, Moderation: time.Millisecond}
	if diff := cmp.Diff(want, *res.worker); diff != "" {
		t.Errorf("worker.Config (-want +got):\n%s", diff)
	}
}

func TestExitStatus(t *testing.T) {
	boom := errors.New("control socket /run/mcr/control.sock: in use by a running mcrd")
	tests := []struct {
		name       string
		args       []string
		err        error // returned by the entry point
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: "mcrd dev, "},
		{name: "no command", args: nil, wantCode: exitUsage,
			wantStderr: "mcrd: missing command: supervisor or version\nRun 'mcrd --help' for usage.\n"},
		{name: "unknown command", args: []string{"bogus"}, wantCode: exitUsage,
			wantStderr: "mcrd: unknown command \"bogus\" for \"mcrd\"\nRun 'mcrd --help' for usage.\n"},
		{name: "unknown flag", args: []string{"supervisor", "--bogus"}, wantCode: exitUsage,
			wantStderr: "mcrd: unknown flag: --bogus\nRun 'mcrd supervisor --help' for usage.\n"},
		{name: "bad cpus", args: []string{"supervisor", "--cpus", "0-"}, wantCode: exitUsage,
			wantStderr: "mcrd: --cpus: parse CPU list \"0-\": \"0-\": missing CPU number\nRun 'mcrd supervisor --help' for usage.\n"},
		{name: "bad fanout", args: []string{"supervisor", "--fanout", "rss"}, wantCode: exitUsage,
			wantStderr: "mcrd: --fanout: fanout mode \"rss\": want hash or cpu\n"},
		{name: "bad backend", args: []string{"supervisor", "--backend", "dpdk"}, wantCode: exitUsage,
			wantStderr: "mcrd: --backend \"dpdk\": want auto, uring or mmsg\n"},
		{name: "bad log format", args: []string{"supervisor", "--log-format", "xml"}, wantCode: exitUsage,
			wantStderr: "mcrd: --log-format \"xml\": want text or json\n"},
		{name: "bad log level", args: []string{"supervisor", "--log-level", "loud"}, wantCode: exitUsage,
			wantStderr: "mcrd: --log-level \"loud\": want debug, info, warn or error\n"},
		{name: "negative workers", args: []string{"supervisor", "--num-workers", "-1"}, wantCode: exitUsage,
			wantStderr: "mcrd: --num-workers -1: must be 0 (one per CPU) or more\n"},
		{name: "zero stats interval", args: []string{"supervisor", "--stats-interval", "0s"}, wantCode: exitUsage,
			wantStderr: "mcrd: --stats-interval 0s: must be positive\n"},
		{name: "negative ring blocks", args: []string{"supervisor", "--rx-ring-blocks", "-1"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring-blocks -1: want 0 (no ring) or more\n"},
		{name: "too many ring blocks", args: []string{"supervisor", "--rx-ring-blocks", "5000"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring frames, --rx-ring-frames 0, --rx-ring-blocks 5000, --rx-ring-timeout 1ms: worker config: receive ring: 5000 blocks: want 1 to 4096\n"},
		{name: "negative ring frames", args: []string{"supervisor", "--rx-ring-frames", "-1"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring-frames -1: want 0 (32768 / workers) or more\n"},
		{name: "moderation too long", args: []string{"supervisor", "--rx-moderation", "20ms"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-moderation 20ms: want 0 (never nap) to 10ms\n"},
		{name: "negative moderation", args: []string{"supervisor", "--rx-moderation", "-1ms"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-moderation -1ms: want 0 (never nap) to 10ms\n"},
		{name: "too many ring frames", args: []string{"supervisor", "--rx-ring-frames", "70000"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring frames, --rx-ring-frames 70000, --rx-ring-blocks 64, --rx-ring-timeout 1ms: worker config: receive ring: 70016 frames: want at most 65536\n"},
		{name: "unknown ring kind", args: []string{"supervisor", "--rx-ring", "v4"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring v4, --rx-ring-frames 0, --rx-ring-blocks 64, --rx-ring-timeout 1ms: worker config: receive ring \"v4\": want frames or blocks\n"},
		{name: "ring timeout not in whole ms", args: []string{"supervisor", "--rx-ring-timeout", "1500us"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring frames, --rx-ring-frames 0, --rx-ring-blocks 64, --rx-ring-timeout 1.5ms: worker config: receive ring timeout 1.5ms: want whole milliseconds\n"},
		{name: "ring timeout too long", args: []string{"supervisor", "--rx-ring-timeout", "2s"}, wantCode: exitUsage,
			wantStderr: "mcrd: --rx-ring frames, --rx-ring-frames 0, --rx-ring-blocks 64, --rx-ring-timeout 2s: worker config: receive ring: block timeout 2000 ms: want 1 to 1000\n"},
		{name: "bad duration", args: []string{"supervisor", "--stats-interval", "soon"}, wantCode: exitUsage,
			wantStderr: "mcrd: invalid argument \"soon\" for \"--stats-interval\" flag"},
		{name: "extra argument", args: []string{"supervisor", "now"}, wantCode: exitUsage,
			wantStderr: "mcrd: unknown command \"now\" for \"mcrd supervisor\"\n"},
		{name: "worker without core", args: []string{"worker", "--id", "0"}, wantCode: exitUsage,
			wantStderr: "mcrd: required flag(s) \"core\" not set\n"},
		{name: "supervisor fails", args: []string{"supervisor"}, err: boom, wantCode: exitRuntime,
			wantStderr: "mcrd: control socket /run/mcr/control.sock: in use by a running mcrd\n"},
		{name: "worker fails", args: []string{"worker", "--id", "0", "--core", "0"}, err: errors.New("make fd 5 non-blocking: bad file descriptor"),
			wantCode: exitRuntime, wantStderr: "mcrd: make fd 5 non-blocking: bad file descriptor\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runMcrd(t, tt.args, nil, tt.err)
			if res.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", res.code, tt.wantCode, res.stderr)
			}
			if !strings.HasPrefix(res.stdout, tt.wantStdout) {
				t.Errorf("stdout %q, want it to start with %q", res.stdout, tt.wantStdout)
			}
			if !strings.HasPrefix(res.stderr, tt.wantStderr) || (tt.wantStderr == "" && res.stderr != "") {
				t.Errorf("stderr %q, want it to start with %q", res.stderr, tt.wantStderr)
			}
			if tt.wantCode == exitUsage && (res.super != nil || res.worker != nil) {
				t.Error("usage error, but an entry point ran")
			}
		})
	}
}

func TestWorkerIsHidden(t *testing.T) {
	res := runMcrd(t, []string{"--help"}, nil, nil)
	if res.code != exitOK || strings.Contains(res.stdout, "\n  worker ") || !strings.Contains(res.stdout, "\n  supervisor ") {
		t.Errorf("exit %d, help %q; want the supervisor command listed and the worker command hidden", res.code, res.stdout)
	}
}
