package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// testDaemon is a control server over a master of fakes, listening on a
// socket in a fresh directory. Links eth0 (ifindex 2) and eth1 (3) exist
// and are up; the data plane reports two workers.
type testDaemon struct {
	*testMaster
	d    *daemon
	srv  *server
	path string
	dir  string
}

func startTestDaemon(t testing.TB) *testDaemon {
	t.Helper()
	// Not t.TempDir: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "mcrsv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tm := newTestMaster(t)
	tm.linkChanged(link{"eth0", 2, true})
	tm.linkChanged(link{"eth1", 3, true})
	tm.dp.workers = []controlproto.WorkerInfo{
		{Worker: 0, PID: 100, Core: 0, State: "running", InSync: true},
		{Worker: 1, PID: 101, Core: 1, State: "running", InSync: true},
	}
	td := &testDaemon{testMaster: tm, path: filepath.Join(dir, "ctl.sock"), dir: dir}
	td.d = &daemon{
		log: testLogger(tm.log), level: new(slog.LevelVar), configPath: filepath.Join(dir, "rules.json"),
		master: tm.master, dp: tm.dp, stats: tm.master.stats,
	}
	ln, err := listenControl(td.path, td.d.log)
	if err != nil {
		t.Fatal(err)
	}
	td.srv = newServer(ln, td.d.serve, td.d.log)
	td.srv.start()
	t.Cleanup(td.srv.close)
	return td
}

// rawConn is a client connection that writes and reads raw lines.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (td *testDaemon) dial(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", td.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReaderSize(c, 1<<20)}
}

func (rc *rawConn) send(line string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, line); err != nil {
		rc.t.Fatal(err)
	}
}

// recv reads one reply line, within 10 s.
func (rc *rawConn) recv() string {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := rc.br.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("read reply: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// call sends one request line and returns the reply line.
func (rc *rawConn) call(line string) string {
	rc.t.Helper()
	rc.send(line + "\n")
	return rc.recv()
}

// client returns a controlproto.Client on the daemon's socket.
func (td *testDaemon) client(t *testing.T) *controlproto.Client {
	t.Helper()
	c, err := controlproto.Dial(context.Background(), td.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func errReply(code, msg string) string {
	b, _ := json.Marshal(controlproto.Response{Error: &controlproto.Error{Code: code, Message: msg}})
	return string(b)
}

const (
	ruleA    = `{"id":"a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}`
	ruleB    = `{"input":{"interface":"eth0","group":"FF3E::1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.3","port":6000}]}`
	okResult = `{"ok":true}`
)

func TestCommands(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	bID := ruleset.DefaultID(ruleset.Input{Interface: "eth0", Group: "ff3e::1", Port: 5000})
	steps := []struct {
		name, req, want string
	}{
		{"Ping", `{"command":"Ping"}`, okResult},
		{"AddRule", `{"command":"AddRule","rule":` + ruleA + `}`, `{"ok":true,"result":{"id":"a"}}`},
		{"AddRule with default id", `{"command":"AddRule","rule":` + ruleB + `}`, `{"ok":true,"result":{"id":"` + bID + `"}}`},
		{"AddRule pending", `{"command":"AddRule","rule":{"id":"p","input":{"interface":"nosuch0","group":"10.0.0.1","port":7000},"outputs":[{"interface":"eth1","group":"239.2.2.4","port":6000}]}}`,
			`{"ok":true,"result":{"id":"p"}}`},
		{"AddRule duplicate id", `{"command":"AddRule","rule":` + strings.Replace(ruleA, "239.1.1.1", "239.1.1.9", 1) + `}`,
			errReply("already_exists", `rule "a" already exists`)},
		{"AddRule duplicate input", `{"command":"AddRule","rule":` + strings.Replace(ruleA, `"a"`, `"a2"`, 1) + `}`,
			errReply("already_exists", `input 239.1.1.1:5000@eth0 is already used by rule "a"`)},
		{"AddRule invalid", `{"command":"AddRule","rule":` + strings.Replace(ruleA, "6000", "0", 1) + `}`,
			errReply("invalid_argument", "outputs[0].port: must be 1..65535")},
		{"AddRule unknown field", `{"command":"AddRule","rule":` + strings.Replace(ruleA, `"port":6000`, `"port":6000,"tll":3`, 1) + `}`,
			errReply("invalid_argument", `outputs[0]: unknown field "tll"`)},
		{"AddRule without rule", `{"command":"AddRule"}`, errReply("invalid_argument", `AddRule needs "rule"`)},
		{"RemoveRule missing", `{"command":"RemoveRule","id":"zz"}`, errReply("not_found", `no rule "zz"`)},
		{"ListRules", `{"command":"ListRules"}`, `{"ok":true,"result":[` +
			`{"id":"` + bID + `","input":{"interface":"eth0","group":"ff3e::1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.3","port":6000}],"state":"active","output_states":["active"]},` +
			`{"id":"a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}],"state":"active","output_states":["active"]},` +
			`{"id":"p","input":{"interface":"nosuch0","group":"10.0.0.1","port":7000},"outputs":[{"interface":"eth1","group":"239.2.2.4","port":6000}],"state":"pending","output_states":["active"]}]}`},
		{"RemoveRule", `{"command":"RemoveRule","id":"p"}`, `{"ok":true,"result":{"id":"p"}}`},
		{"GetConfig", `{"command":"GetConfig"}`, `{"ok":true,"result":{"rules":[` +
			`{"id":"` + bID + `","input":{"interface":"eth0","group":"ff3e::1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.3","port":6000}]},` +
			`{"id":"a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}]}}`},
		{"ListWorkers", `{"command":"ListWorkers"}`, `{"ok":true,"result":[` +
			`{"worker":0,"pid":100,"core":0,"state":"running","restarts":0,"uptime_s":0,"ruleset_hash":"","in_sync":true,"resyncs":0},` +
			`{"worker":1,"pid":101,"core":1,"state":"running","restarts":0,"uptime_s":0,"ruleset_hash":"","in_sync":true,"resyncs":0}]}`},
		{"GetLogLevel", `{"command":"GetLogLevel"}`, `{"ok":true,"result":{"level":"info"}}`},
		{"SetLogLevel", `{"command":"SetLogLevel","level":"debug"}`, `{"ok":true,"result":{"level":"debug"}}`},
		{"GetLogLevel after set", `{"command":"GetLogLevel"}`, `{"ok":true,"result":{"level":"debug"}}`},
		{"SetLogLevel invalid", `{"command":"SetLogLevel","level":"verbose"}`,
			errReply("invalid_argument", `level "verbose": must be debug, info, warn or error`)},
		{"unknown command", `{"command":"Frobnicate"}`, errReply("invalid_argument", `unknown command "Frobnicate"`)},
		{"unknown request field", `{"command":"Ping","x":1}`, errReply("invalid_argument", `unknown field "x"`)},
		{"not JSON", `hello`, errReply("invalid_argument", "invalid JSON at byte 1: invalid character 'h' looking for beginning of value")},
		{"CheckConfig inline", `{"command":"CheckConfig","config":{"rules":[` + ruleA + `]}}`, `{"ok":true,"result":{"rules":1}}`},
		{"SaveConfig without a directory", `{"command":"SaveConfig","path":"/nonexistent-mcr/x.json"}`,
			errReply("internal", "save config: create a temporary file in /nonexistent-mcr: no such file or directory")},
	}
	for _, st := range steps {
		if got := rc.call(st.req); got != st.want {
			t.Errorf("%s:\n got %s\nwant %s", st.name, got, st.want)
		}
	}
	if diff := cmp.Diff([]string{bID, "a"}, td.dp.ids()); diff != "" {
		t.Errorf("data plane rules (-want +got):\n%s", diff)
	}
}

func TestGetVersion(t *testing.T) {
	td := startTestDaemon(t)
	var v controlproto.VersionResult
	if err := td.client(t).Call(context.Background(), controlproto.Request{Command: "GetVersion"}, &v); err != nil {
		t.Fatal(err)
	}
	if v.Protocol != controlproto.ProtocolVersion || v.Version != Version || !strings.HasPrefix(v.Go, "go") {
		t.Errorf("GetVersion = %+v", v)
	}
}

func TestGetStats(t *testing.T) {
	td := startTestDaemon(t)
	c := td.client(t)
	ctx := context.Background()
	var r ruleset.Rule
	json.Unmarshal([]byte(ruleA), &r)
	if err := c.Call(ctx, controlproto.Request{Command: "AddRule", Rule: &r}, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	td.master.stats.Observe(&stats.Snapshot{Worker: 1, PID: 101, Seq: 1, UnixNano: now.UnixNano(),
		Counters: stats.WorkerCounters{RxPackets: 7, KernelDrops: 2},
		Rules:    []stats.RuleCounters{{ID: "a", PacketsIn: 7, BytesIn: 700, Outputs: []stats.OutputCounters{{PacketsOut: 7, BytesOut: 700}}}},
	}, now)
	var got stats.Report
	if err := c.Call(ctx, controlproto.Request{Command: "GetStats"}, &got); err != nil {
		t.Fatal(err)
	}
	want := stats.Report{
		Rules: []stats.RuleReport{{ID: "a", PacketsIn: 7, BytesIn: 700,
			Outputs: []stats.OutputReport{{Destination: "239.2.2.2:6000@eth1", PacketsOut: 7, BytesOut: 700}}}},
		Workers: []stats.WorkerReport{{Worker: 0, Core: 0},
			{Worker: 1, Core: 1, WorkerCounters: stats.WorkerCounters{RxPackets: 7, KernelDrops: 2}}},
		Totals: stats.Totals{PacketsIn: 7, PacketsOut: 7, KernelDrops: 2,
			Rules: stats.StateCounts{Active: 1}, Outputs: stats.StateCounts{Active: 1}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetStats (-want +got):\n%s", diff)
	}
}

func TestHostileInput(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	before := rc.call(`{"command":"ListRules"}`)

	huge := `{"command":"Ping","id":"` + strings.Repeat("x", 2<<20) + `"}`
	steps := []struct{ name, req, want string }{
		{"garbage", "\x00\xff garbage {{{", errReply("invalid_argument", "invalid JSON at byte 1: invalid character '\\x00' looking for beginning of value")},
		{"2 MiB line", huge, errReply("invalid_argument", "request longer than 1048576 bytes")},
		{"usable after the long line", `{"command":"Ping"}`, okResult},
		{"JSON array", `[1,2]`, errReply("invalid_argument", "request must be a JSON object, got array")},
		{"truncated JSON", `{"command":"Ping"`, errReply("invalid_argument", "invalid JSON: unexpected end of input")},
		{"unknown command", `{"command":"DropAllTables"}`, errReply("invalid_argument", `unknown command "DropAllTables"`)},
		{"invalid rule", `{"command":"AddRule","rule":{"id":"x y","input":{}}}`,
			errReply("invalid_argument", `id: "x y" is not a valid id (1..64 characters of A-Za-z0-9._:-)`)},
		{"rule of the wrong type", `{"command":"AddRule","rule":"a"}`, errReply("invalid_argument", "rule: must be an object, got string")},
		{"still usable", `{"command":"Ping"}`, okResult},
	}
	for _, st := range steps {
		if got := rc.call(st.req); got != st.want {
			t.Errorf("%s:\n got %s\nwant %s", st.name, got, st.want)
		}
	}
	if after := rc.call(`{"command":"ListRules"}`); after != before {
		t.Errorf("ruleset changed by hostile input:\nbefore %s\nafter  %s", before, after)
	}
}

func TestSlowClientsDelayNoOne(t *testing.T) {
	td := startTestDaemon(t)
	// A client stalled in the middle of a request line.
	stalled := td.dial(t)
	stalled.send(`{"command":"Pi`)
	// A client that pipelines requests and never reads the replies,
	// until its socket buffers are full.
	deaf := td.dial(t)
	go func() {
		line := []byte(`{"command":"ListRules"}` + "\n")
		for {
			deaf.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := deaf.c.Write(line); err != nil {
				return
			}
		}
	}()

	// 100 clients at once, each adding, listing and removing its rule.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			errs <- clientSession(td.path, i)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("100 clients took %v next to a stalled and a deaf client", d)
	}
	// The stalled client finishes its line and is answered.
	if got := stalled.call(`ng"}`); got != okResult {
		t.Errorf("stalled client's request: %s", got)
	}
	if ids := td.dp.ids(); len(ids) != 0 {
		t.Errorf("data plane holds %v after every client removed its rule", ids)
	}
}

// clientSession adds rule c<i>, finds it in ListRules and removes it.
func clientSession(path string, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controlproto.Dial(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	id := fmt.Sprintf("c%d", i)
	r := testRule(id, "eth0", fmt.Sprintf("239.3.%d.%d", i/256, i%256), 5000, "eth1")
	if err := c.Call(ctx, controlproto.Request{Command: "AddRule", Rule: &r}, nil); err != nil {
		return fmt.Errorf("client %d: add: %w", i, err)
	}
	var list []controlproto.RuleStatus
	if err := c.Call(ctx, controlproto.Request{Command: "ListRules"}, &list); err != nil {
		return fmt.Errorf("client %d: list: %w", i, err)
	}
	found := false
	for _, rs := range list {
		found = found || rs.ID == id && rs.State == "active"
	}
	if !found {
		return fmt.Errorf("client %d: rule %s not active in ListRules", i, id)
	}
	if err := c.Call(ctx, controlproto.Request{Command: "RemoveRule", ID: id}, nil); err != nil {
		return fmt.Errorf("client %d: remove: %w", i, err)
	}
	return nil
}

func TestConnectionLimit(t *testing.T) {
	td := startTestDaemon(t)
	conns := make([]*rawConn, maxConns)
	for i := range conns {
		conns[i] = td.dial(t)
		if got := conns[i].call(`{"command":"Ping"}`); got != okResult {
			t.Fatalf("connection %d: %s", i, got)
		}
	}
	over := td.dial(t)
	want := errReply("unavailable", "too many control connections (limit 256); try again later")
	if got := over.recv(); got != want {
		t.Errorf("connection over the limit got %s, want %s", got, want)
	}
	if _, err := over.br.ReadByte(); err != io.EOF {
		t.Errorf("connection over the limit not closed: %v", err)
	}
	// Closing one makes room for another.
	conns[0].c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !pingOnce(td.path) {
		if time.Now().After(deadline) {
			t.Fatal("no room for a new connection after closing one")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingOnce reports whether a new connection to path is served.
func pingOnce(path string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := controlproto.Dial(ctx, path)
	if err != nil {
		return false
	}
	defer c.Close()
	return c.Call(ctx, controlproto.Request{Command: "Ping"}, nil) == nil
}

// pipelineAddRules writes n AddRule requests on one connection without
// waiting, then checks every reply in order and that the data plane and the
// memberships hold all n rules.
func pipelineAddRules(t testing.TB, n int) {
	td := startTestDaemon(t)
	sendAddRules(t, td, n)
	if len(td.dp.ids()) != n {
		t.Errorf("data plane holds %d rules, want %d", len(td.dp.ids()), n)
	}
	if groups, sockets := td.groups.count(); groups != n || sockets != (n+19)/20 {
		t.Errorf("%d groups joined on %d helper sockets, want %d on %d", groups, sockets, n, (n+19)/20)
	}
}

func TestPipelinedAddRule(t *testing.T) { pipelineAddRules(t, 5000) }

// BenchmarkPipelinedAddRule reports how many rules per second one
// connection can add (issue target: at least 5,000/s); docs/PERFORMANCE.md
// quotes it.
func BenchmarkPipelinedAddRule(b *testing.B) {
	const n = 5000
	start := time.Now()
	for range b.N {
		pipelineAddRules(b, n)
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "rules/s")
}

func TestConfigSaveLoadRoundTrip(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	rc.call(`{"command":"AddRule","rule":` + ruleB + `}`)
	want := rc.call(`{"command":"ListRules"}`)

	// Default path: --config.
	saved := rc.call(`{"command":"SaveConfig"}`)
	if wantSaved := `{"ok":true,"result":{"path":"` + td.d.configPath + `","rules":2}}`; saved != wantSaved {
		t.Errorf("SaveConfig: %s, want %s", saved, wantSaved)
	}
	fi, err := os.Stat(td.d.configPath)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("saved config: %v, mode %v; want 0644", err, fi.Mode())
	}
	entries, _ := os.ReadDir(td.dir)
	if len(entries) != 2 { // ctl.sock and rules.json, no temp file left
		t.Errorf("directory holds %v after saving, want the socket and the config", entries)
	}

	other := startTestDaemon(t)
	orc := other.dial(t)
	if got := orc.call(`{"command":"LoadConfig","path":"` + td.d.configPath + `"}`); got != `{"ok":true,"result":{"added":2,"removed":0,"unchanged":0}}` {
		t.Errorf("LoadConfig: %s", got)
	}
	if got := orc.call(`{"command":"ListRules"}`); got != want {
		t.Errorf("rules after save and load:\n got %s\nwant %s", got, want)
	}

	// Without --config, SaveConfig needs a path.
	other.d.configPath = ""
	if got, want := orc.call(`{"command":"SaveConfig"}`), errReply("invalid_argument", "no path given and mcrd runs without --config"); got != want {
		t.Errorf("SaveConfig without path: %s, want %s", got, want)
	}
}

func TestLoadConfigRejectsBadFile(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	before := rc.call(`{"command":"ListRules"}`)
	bad := filepath.Join(td.dir, "bad.json")
	os.WriteFile(bad, []byte(`{"rules":[
		{"id":"ok","input":{"interface":"eth0","group":"239.7.7.7","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]},
		{"id":"b","input":{"interface":"eth0","group":"239.7.7.8","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":0}]}]}`), 0o644)
	want := errReply("invalid_argument", `config `+bad+`: rules[1] (id "b"): outputs[0].port: must be 1..65535`)
	for _, cmd := range []string{"LoadConfig", "CheckConfig"} {
		if got := rc.call(`{"command":"` + cmd + `","path":"` + bad + `"}`); got != want {
			t.Errorf("%s of a bad file:\n got %s\nwant %s", cmd, got, want)
		}
	}
	missing := filepath.Join(td.dir, "missing.json")
	if got, want := rc.call(`{"command":"LoadConfig","path":"`+missing+`"}`),
		errReply("invalid_argument", "read config: open "+missing+": no such file or directory"); got != want {
		t.Errorf("LoadConfig of a missing file:\n got %s\nwant %s", got, want)
	}
	if after := rc.call(`{"command":"ListRules"}`); after != before {
		t.Errorf("a rejected config changed the ruleset:\nbefore %s\nafter  %s", before, after)
	}
}

func TestLoadConfigInlineDiff(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	rc.call(`{"command":"AddRule","rule":` + strings.NewReplacer(`"a"`, `"x"`, "239.1.1.1", "239.1.1.2").Replace(ruleA) + `}`)
	td.dp.updates()
	changedA := strings.Replace(ruleA, "6000", "6001", 1)
	newC := strings.NewReplacer(`"a"`, `"c"`, "239.1.1.1", "239.1.1.3").Replace(ruleA)
	got := rc.call(`{"command":"LoadConfig","config":{"rules":[` + changedA + `,` + newC + `]}}`)
	if want := `{"ok":true,"result":{"added":2,"removed":2,"unchanged":0}}`; got != want {
		t.Errorf("LoadConfig: %s, want %s", got, want)
	}
	if diff := cmp.Diff([][]string{{"-x", "+a", "+c"}}, td.dp.updates()); diff != "" {
		t.Errorf("data plane updates (-want +got):\n%s", diff)
	}
}

func TestListenControl(t *testing.T) {
	dir, err := os.MkdirTemp("", "mcrls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := testLogger(nil)

	t.Run("creates the directory, mode 0660", func(t *testing.T) {
		path := filepath.Join(dir, "new", "ctl.sock")
		ln, err := listenControl(path, log)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, _ := os.Stat(path)
		di, _ := os.Stat(filepath.Dir(path))
		if fi.Mode().Perm() != 0o660 || di.Mode().Perm() != 0o755 {
			t.Errorf("socket mode %v, directory mode %v; want 0660 and 0755", fi.Mode().Perm(), di.Mode().Perm())
		}
	})
	t.Run("refuses a socket a daemon answers on", func(t *testing.T) {
		td := startTestDaemon(t)
		_, err := listenControl(td.path, log)
		if want := "control socket " + td.path + " is in use by a running mcrd"; err == nil || err.Error() != want {
			t.Errorf("listen on a live socket: %v, want %q", err, want)
		}
		if got := td.dial(t).call(`{"command":"Ping"}`); got != okResult {
			t.Errorf("the running daemon after the refusal: %s", got)
		}
	})
	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close()
		ln, err := listenControl(path, log)
		if err != nil {
			t.Fatalf("listen over a stale socket: %v", err)
		}
		defer ln.Close()
		srv := newServer(ln, func(controlproto.Request) (controlproto.Response, durability) { return controlproto.OK(nil), nil }, log)
		srv.start()
		defer srv.close()
		c, err := controlproto.Dial(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Call(context.Background(), controlproto.Request{Command: "Ping"}, nil); err != nil {
			t.Errorf("Ping on the replacing socket: %v", err)
		}
	})
	t.Run("refuses a file that is not a socket", func(t *testing.T) {
		path := filepath.Join(dir, "plain")
		os.WriteFile(path, nil, 0o644)
		_, err := listenControl(path, log)
		if want := "control socket " + path + " exists and is not a socket"; err == nil || err.Error() != want {
			t.Errorf("listen on a plain file: %v, want %q", err, want)
		}
	})
}

func TestServerCloseEndsConnections(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	rc.send(`{"command":"Pi`)
	done := make(chan struct{})
	go func() { td.srv.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server close waits on a stalled client")
	}
	// Closing a socket with unread input resets the connection.
	if _, err := rc.br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection after close: %v, want EOF or ECONNRESET", err)
	}
	if _, err := os.Stat(td.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after close: %v, want it removed", err)
	}
}
