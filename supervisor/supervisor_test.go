package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/syncbuf"
	"github.com/mcrelay/mcr/supervisor/pool/pooltest"
)

// runTest runs Run with fake workers (this test binary, see
// pool_fake_test.go) in a fresh directory holding the control socket and
// the config, which is written with config first.
type runTest struct {
	t      *testing.T
	dir    string
	cfg    Config
	logs   *syncbuf.Buffer
	result chan error
}

func newRunTest(t *testing.T, config string) *runTest {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcrrun")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Workers inherit the environment: they become fake workers.
	t.Setenv(pooltest.WorkerEnv, "1")
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	rt := &runTest{t: t, dir: dir, logs: &syncbuf.Buffer{}, result: make(chan error, 1)}
	rt.cfg = Config{
		NumWorkers:    2,
		CPUs:          []int{0},
		ControlSocket: filepath.Join(dir, "run", "ctl.sock"),
		ConfigPath:    filepath.Join(dir, "rules.json"),
		StatsInterval: pooltest.StatsInterval,
		LogLevel:      new(slog.LevelVar),
		WorkerExe:     exe,
	}
	rt.cfg.Logger = testLogger(rt.logs)
	rt.writeConfig(config)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", rt.logs)
		}
	})
	return rt
}

func (rt *runTest) writeConfig(config string) {
	rt.t.Helper()
	if err := os.WriteFile(rt.cfg.ConfigPath, []byte(config), 0o644); err != nil {
		rt.t.Fatal(err)
	}
}

// start runs the daemon and waits until it answers on its socket.
func (rt *runTest) start(ctx context.Context) {
	rt.t.Helper()
	go func() { rt.result <- Run(ctx, rt.cfg) }()
	netnstest.WaitFor(rt.t, 10*time.Second, "the daemon to answer on its control socket", func() bool {
		select {
		case err := <-rt.result:
			rt.t.Fatalf("Run returned at start: %v", err)
		default:
		}
		return pingOnce(rt.cfg.ControlSocket)
	})
}

// signal sends sig to this process, which the running daemon handles.
func (rt *runTest) signal(sig syscall.Signal) {
	rt.t.Helper()
	select {
	case err := <-rt.result:
		rt.t.Fatalf("daemon already returned (%v); not sending %v", err, sig)
	default:
	}
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		rt.t.Fatal(err)
	}
}

func (rt *runTest) call(req controlproto.Request, result any) {
	rt.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := controlproto.Dial(ctx, rt.cfg.ControlSocket)
	if err != nil {
		rt.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(ctx, req, result); err != nil {
		rt.t.Fatalf("%s: %v", req.Command, err)
	}
}

// ruleIDs returns the ids and states of ListRules.
func (rt *runTest) ruleIDs() []string {
	var list []controlproto.RuleStatus
	rt.call(controlproto.Request{Command: "ListRules"}, &list)
	var out []string
	for _, rs := range list {
		out = append(out, rs.ID+":"+rs.State)
	}
	return out
}

const runConfig = `{"rules":[
  {"id":"a","input":{"interface":"mcrnone0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"mcrnone1","group":"239.2.2.2","port":6000}]},
  {"id":"b","input":{"interface":"mcrnone0","group":"239.1.1.2","port":5000},"outputs":[{"interface":"mcrnone1","group":"239.2.2.2","port":6001}]}]}`

// notifySocket is a stand-in for systemd's notification socket
// (sd_notify(3)): a unixgram socket whose path goes into NOTIFY_SOCKET.
type notifySocket struct {
	conn *net.UnixConn
	mu   sync.Mutex
	got  []string
}

func listenNotify(t *testing.T, dir string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, strings.Split(string(buf[:k]), "\n")[0])
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	t.Setenv("NOTIFY_SOCKET", conn.LocalAddr().String())
	return n
}

// messages returns the first line of every notification so far, watchdog
// pings left out.
func (n *notifySocket) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.got), func(m string) bool { return m == "WATCHDOG=1" })
}

func (n *notifySocket) watchdogs() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got) - len(slices.DeleteFunc(slices.Clone(n.got), func(m string) bool { return m == "WATCHDOG=1" }))
}

// freeTCPAddr returns a loopback address with a port that was free a moment
// ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesReloadsAndShutsDown(t *testing.T) {
	rt := newRunTest(t, runConfig)
	notify := listenNotify(t, rt.dir)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	rt.cfg.MetricsListen = freeTCPAddr(t)
	// os/signal starts its one watcher goroutine on first use; start it
	// before counting.
	warm := make(chan os.Signal, 1)
	signal.Notify(warm, syscall.SIGUSR2)
	signal.Stop(warm)
	fdsBefore, goroutinesBefore := pooltest.CountOpenFDs(t), runtime.NumGoroutine()
	rt.start(context.Background())
	if diff := cmp.Diff([]string{"a:pending", "b:pending"}, rt.ruleIDs()); diff != "" {
		t.Errorf("rules from --config (-want +got):\n%s", diff)
	}
	var workers []controlproto.WorkerInfo
	netnstest.WaitFor(t, 10*time.Second, "2 workers running and in sync", func() bool {
		rt.call(controlproto.Request{Command: "ListWorkers"}, &workers)
		return len(workers) == 2 && !slices.ContainsFunc(workers, func(w controlproto.WorkerInfo) bool {
			return w.State != "running" || !w.InSync
		})
	})

	netnstest.WaitFor(t, 5*time.Second, "READY=1 and watchdog pings", func() bool {
		return slices.Equal(notify.messages(), []string{"READY=1"}) && notify.watchdogs() >= 2
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // no idle conn to count as a leak
	resp, err := client.Get("http://" + rt.cfg.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `mcr_rules{state="pending"} 2`) {
		t.Errorf("/metrics lacks mcr_rules{state=\"pending\"} 2:\n%s", body)
	}

	// SIGHUP with an invalid --config changes nothing.
	rt.writeConfig(`{"rules":[{"id":"a"}]}`)
	rt.signal(syscall.SIGHUP)
	netnstest.WaitFor(t, 5*time.Second, "the failed reload logged", func() bool {
		return strings.Contains(rt.logs.String(), `msg="reload config on SIGHUP; ruleset unchanged"`)
	})
	if diff := cmp.Diff([]string{"a:pending", "b:pending"}, rt.ruleIDs()); diff != "" {
		t.Errorf("rules after a failed reload (-want +got):\n%s", diff)
	}

	// SIGHUP reloads --config: b goes, c comes.
	rt.writeConfig(`{"rules":[
  {"id":"a","input":{"interface":"mcrnone0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"mcrnone1","group":"239.2.2.2","port":6000}]},
  {"id":"c","input":{"interface":"mcrnone0","group":"239.1.1.3","port":5000},"outputs":[{"interface":"mcrnone1","group":"239.2.2.2","port":6002}]}]}`)
	rt.signal(syscall.SIGHUP)
	netnstest.WaitFor(t, 5*time.Second, "the reloaded rules", func() bool {
		return slices.Equal(rt.ruleIDs(), []string{"a:pending", "c:pending"})
	})

	// SIGTERM: clean exit, socket removed, workers gone.
	rt.signal(syscall.SIGTERM)
	select {
	case err := <-rt.result:
		if err != nil {
			t.Fatalf("Run after SIGTERM: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of SIGTERM")
	}
	if _, err := os.Stat(rt.cfg.ControlSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after shutdown: %v, want it removed", err)
	}
	want := []string{"READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}
	if diff := cmp.Diff(want, notify.messages()); diff != "" {
		t.Errorf("systemd notifications (-want +got):\n%s", diff)
	}
	for _, w := range workers {
		if pooltest.PidAlive(w.PID) {
			t.Errorf("worker %d (pid %d) alive after shutdown", w.Worker, w.PID)
		}
	}
	// Netlink sockets close asynchronously once their subscription ends.
	netnstest.WaitFor(t, 2*time.Second, "goroutines and fds of the daemon to go", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore && pooltest.CountOpenFDs(t) == fdsBefore
	})
}

// TestWatchdogFedWhileConnectionsFull holds every operator slot with idle
// connections of a real client: the daemon keeps feeding the systemd
// watchdog (its health check does not need a slot) and a new client is
// still served.
func TestWatchdogFedWhileConnectionsFull(t *testing.T) {
	rt := newRunTest(t, runConfig)
	notify := listenNotify(t, rt.dir)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	rt.startUntilCleanup()
	for i := range maxConns {
		c, err := net.Dial("unix", rt.cfg.ControlSocket)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, `{"command":"Ping"}`+"\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, make([]byte, len(`{"ok":true}`+"\n"))); err != nil {
			t.Fatalf("connection %d: no reply: %v", i, err)
		}
	}
	fed := notify.watchdogs()
	// Pings every 200 ms: five in well under the 10 s allowed.
	netnstest.WaitFor(t, 10*time.Second, "five watchdog pings with every slot held", func() bool {
		return notify.watchdogs() >= fed+5
	})
	if !pingOnce(rt.cfg.ControlSocket) {
		t.Error("a new client is not served while every slot is held by an idle connection")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	rt := newRunTest(t, `{"rules":[{"id":"a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.1.1.1","port":5000,"ttl":300}]}]}`)
	err := Run(context.Background(), rt.cfg)
	want := `load --config: config ` + rt.cfg.ConfigPath + `: rules[0] (id "a"): outputs[0].ttl: must be 0..255`
	if err == nil || err.Error() != want {
		t.Errorf("Run with a bad config: %v, want %q", err, want)
	}
	if _, err := os.Stat(rt.cfg.ControlSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after a failed start: %v, want none", err)
	}
}

// TestRunConfigBounds gives --config paths that are not config files: at
// start the daemon refuses to run, on SIGHUP it keeps its rules; neither
// reads from the path.
func TestRunConfigBounds(t *testing.T) {
	rt := newRunTest(t, runConfig)
	cfg := rt.cfg
	cfg.ConfigPath = "/dev/zero"
	err := Run(context.Background(), cfg)
	if want := "load --config: read config: /dev/zero is not a regular file but a character device"; err == nil || err.Error() != want {
		t.Errorf("Run with --config /dev/zero: %v, want %q", err, want)
	}

	rt.startUntilCleanup()
	if err := os.Remove(rt.cfg.ConfigPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(rt.cfg.ConfigPath, 0o600); err != nil {
		t.Fatal(err)
	}
	rt.signal(syscall.SIGHUP)
	want := `msg="reload config on SIGHUP; ruleset unchanged" err="read config: ` + rt.cfg.ConfigPath + ` is not a regular file but a FIFO"`
	netnstest.WaitFor(t, 5*time.Second, "the refused reload logged", func() bool {
		return strings.Contains(rt.logs.String(), want)
	})
	if diff := cmp.Diff([]string{"a:pending", "b:pending"}, rt.ruleIDs()); diff != "" {
		t.Errorf("rules after a reload from a FIFO (-want +got):\n%s", diff)
	}
}

func TestRunRefusesLiveSocket(t *testing.T) {
	td := startTestDaemon(t)
	rt := newRunTest(t, `{"rules":[]}`)
	rt.cfg.ControlSocket = td.path
	err := Run(context.Background(), rt.cfg)
	if want := "control socket " + td.path + " is in use by a running mcrd"; err == nil || err.Error() != want {
		t.Errorf("Run on a live socket: %v, want %q", err, want)
	}
	if !pingOnce(td.path) {
		t.Error("the running daemon stopped answering")
	}
}
