package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
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
	return startTestDaemonWith(t, nil)
}

// startTestDaemonWith is startTestDaemon with tune, when not nil, called on
// the daemon before its server starts (to shorten its timeouts, or add
// parts such as trace sessions).
func startTestDaemonWith(t testing.TB, tune func(*testDaemon)) *testDaemon {
	t.Helper()
	// Not t.TempDir: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "mcrsv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tm := newTestMaster(t)
	tm.LinkChanged(links.Link{Name: "eth0", Index: 2, Up: true})
	tm.LinkChanged(links.Link{Name: "eth1", Index: 3, Up: true})
	tm.dp.workers = []controlproto.WorkerInfo{
		{Worker: 0, PID: 100, Core: 0, State: "running", InSync: true},
		{Worker: 1, PID: 101, Core: 1, State: "running", InSync: true},
	}
	td := &testDaemon{testMaster: tm, path: filepath.Join(dir, "ctl.sock"), dir: dir}
	td.d = &daemon{
		log: testLogger(tm.log), level: new(slog.LevelVar), configPath: filepath.Join(dir, "rules.json"),
		master: tm.master, dp: tm.dp, stats: tm.master.stats,
	}
	ln, err := listenControl(td.path, "", td.d.log)
	if err != nil {
		t.Fatal(err)
	}
	td.srv = newServer(ln, td.d.serve, td.d.log)
	if tune != nil {
		tune(td)
	}
	td.srv.start()
	t.Cleanup(td.srv.close)
	return td
}

// dialWithRuleA connects, adds ruleA and returns the connection and a check
// for the end of a test that the ruleset is still what it was; what names
// what must not have changed it.
func (td *testDaemon) dialWithRuleA(t *testing.T) (rc *rawConn, unchanged func(what string)) {
	t.Helper()
	rc = td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	before := rc.call(`{"command":"ListRules"}`)
	return rc, func(what string) {
		t.Helper()
		if after := rc.call(`{"command":"ListRules"}`); after != before {
			t.Errorf("%s changed the ruleset:\nbefore %s\nafter  %s", what, before, after)
		}
	}
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

// TestListRulesShowsWorkerErrors has workers report errors for outputs:
// ListRules shows them per output and in the rule's error (after the
// supervisor's own), as GetStats does, and GetStats counts an output whose
// interface is up but that fails as failing, not active. An error for a
// rule with more outputs than the current one (an earlier version of it)
// names no output.
func TestListRulesShowsWorkerErrors(t *testing.T) {
	td := startTestDaemon(t)
	td.kernel.Fail[netip.MustParseAddr("239.1.1.3")] = syscall.ENODEV
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	rc.call(`{"command":"AddRule","rule":` + strings.NewReplacer(`"a"`, `"b"`, "239.1.1.1", "239.1.1.2").Replace(ruleA) + `}`)
	rc.call(`{"command":"AddRule","rule":` + strings.NewReplacer(`"a"`, `"c"`, "239.1.1.1", "239.1.1.3").Replace(ruleA) + `}`)
	now := time.Now()
	td.master.stats.Observe(&stats.Snapshot{Worker: 0, PID: 100, Seq: 1, UnixNano: now.UnixNano(), Rules: []stats.RuleCounters{
		{ID: "a", Outputs: []stats.OutputCounters{{Errors: 3}}, Error: "outputs[0] 239.2.2.2:6000@eth1: no route",
			OutputErrors: []string{"no route"}},
		{ID: "b", Outputs: []stats.OutputCounters{{}, {}}, Error: "outputs[1] 239.2.2.9:6000@eth1: gone",
			OutputErrors: []string{"", "gone"}},
		{ID: "c", Outputs: []stats.OutputCounters{{}}, Error: "outputs[0] 239.2.2.2:6000@eth1: no route",
			OutputErrors: []string{"no route"}},
	}}, now)

	var list []controlproto.RuleStatus
	c := td.client(t)
	if err := c.Call(context.Background(), controlproto.Request{Command: "ListRules"}, &list); err != nil {
		t.Fatal(err)
	}
	type shown struct {
		ID, Error    string
		OutputErrors []string
	}
	var got []shown
	for _, rs := range list {
		got = append(got, shown{rs.ID, rs.Error, rs.OutputErrors})
	}
	want := []shown{
		{"a", "outputs[0] 239.2.2.2:6000@eth1: no route", []string{"no route"}},
		{"b", "outputs[1] 239.2.2.9:6000@eth1: gone", nil},
		{"c", "join 239.1.1.3 on eth0: no such device; outputs[0] 239.2.2.2:6000@eth1: no route", []string{"no route"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListRules errors (-want +got):\n%s", diff)
	}
	var rep stats.Report
	if err := c.Call(context.Background(), controlproto.Request{Command: "GetStats"}, &rep); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stats.StateCounts{Active: 1, Failing: 2}, rep.Totals.Outputs); diff != "" {
		t.Errorf("GetStats totals.outputs (-want +got):\n%s", diff)
	}
	if rep.Rules[0].Outputs[0].Error != "no route" {
		t.Errorf("GetStats outputs[0].error of a = %q, want %q", rep.Rules[0].Outputs[0].Error, "no route")
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

// TestHugeValuesNotEchoed sends requests each carrying a 500 KB value where
// an error message names it: the reply quotes a short prefix and the
// value's length, never the value.
func TestHugeValuesNotEchoed(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	const n = 500_000
	digits, letters := strings.Repeat("9", n), strings.Repeat("x", n)
	quoted := `\"` + strings.Repeat("x", 100) + `…\" (500000 bytes)`
	rule := func(input string) string {
		return `{"command":"AddRule","rule":{"input":` + input + `,"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}}`
	}
	for _, tc := range []struct{ name, req, want string }{
		{"number", rule(`{"interface":"eth0","group":"239.1.1.1","port":` + digits + `}`),
			"input.port: must be an integer, got " + strings.Repeat("9", 100) + "… (500000 bytes)"},
		{"command", `{"command":"` + letters + `"}`, "unknown command " + quoted},
		{"field name", `{"command":"Ping","` + letters + `":1}`, "unknown field " + quoted},
		{"rule field name", rule(`{"` + letters + `":1}`), "input: unknown field " + quoted},
		{"interface", rule(`{"interface":"` + letters + `","group":"239.1.1.1","port":5000}`),
			"input.interface: " + quoted + " is not a valid interface name"},
		{"group", rule(`{"interface":"eth0","group":"` + letters + `","port":5000}`),
			"input.group: " + quoted + " is not an IP address"},
		{"id", `{"command":"AddRule","rule":{"id":"` + letters + `"}}`,
			"id: " + quoted + " is not a valid id (1..64 characters of A-Za-z0-9._:-)"},
		{"level", `{"command":"SetLogLevel","level":"` + letters + `"}`,
			"level " + quoted + ": must be debug, info, warn or error"},
		{"config path", `{"command":"CheckConfig","path":"/` + letters + `"}`,
			"read config: open /" + strings.Repeat("x", 99) + "… (500001 bytes): file name too long"},
	} {
		got := rc.call(tc.req)
		if want := `{"ok":false,"error":{"code":"invalid_argument","message":"` + tc.want + `"}}`; got != want {
			t.Errorf("%s: got %d bytes:\n%.400s\nwant %s", tc.name, len(got), got, want)
		}
	}
	// An id RemoveRule does not know is quoted cut short too.
	got := rc.call(`{"command":"RemoveRule","id":"` + letters + `"}`)
	if want := `{"ok":false,"error":{"code":"not_found","message":"no rule ` + quoted + `"}}`; got != want {
		t.Errorf("RemoveRule of a 500 KB id: got %d bytes: %.300s…; want %s", len(got), got, want)
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

// TestEndlessLine sends 64 MiB without a newline: the daemon discards what
// is over the line limit as it arrives (its heap does not grow with the
// line), serves other clients meanwhile, and answers the line with an error
// once it ends.
func TestEndlessLine(t *testing.T) {
	td := startTestDaemon(t)
	endless := td.dial(t)
	var heapBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapBefore)
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	sent := make(chan error, 1)
	go func() {
		for range 64 {
			endless.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := endless.c.Write(chunk); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	if err := clientSession(td.path, 1); err != nil {
		t.Errorf("another client while the endless line arrives: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("send the endless line: %v", err)
	}
	var heapAfter runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&heapAfter)
	if grown := int64(heapAfter.HeapAlloc) - int64(heapBefore.HeapAlloc); grown > 16<<20 {
		t.Errorf("heap grew by %d MiB while a 64 MiB line arrived", grown>>20)
	}
	if got, want := endless.call(""), errReply("invalid_argument", "request longer than 1048576 bytes"); got != want {
		t.Errorf("end of the endless line: %s, want %s", got, want)
	}
	if got := endless.call(`{"command":"Ping"}`); got != okResult {
		t.Errorf("after the endless line: %s", got)
	}
}

// TestPipelinedHalfClose pipelines thousands of requests and closes its
// sending side: every request gets its reply, in order, before the daemon
// closes the connection.
func TestPipelinedHalfClose(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	const n = 5000
	go func() {
		var buf strings.Builder
		for i := range n {
			fmt.Fprintf(&buf, `{"command":"RemoveRule","id":"r%d"}`+"\n", i)
		}
		io.WriteString(rc.c, buf.String())
		rc.c.(*net.UnixConn).CloseWrite()
	}()
	for i := range n {
		if got, want := rc.recv(), errReply("not_found", fmt.Sprintf("no rule %q", fmt.Sprintf("r%d", i))); got != want {
			t.Fatalf("reply %d: %s, want %s", i, got, want)
		}
	}
	if b, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("after the last reply: read %q, %v; want EOF", b, err)
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

// TestConnectionLimit fills every operator slot with idle connections: a
// new client is still served, because the connection idle the longest is
// closed to make room, and the others keep being served.
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
	if got := over.call(`{"command":"Ping"}`); got != okResult {
		t.Errorf("connection over the limit: %s, want it served", got)
	}
	conns[0].c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := conns[0].br.ReadByte(); err != io.EOF {
		t.Errorf("the connection idle longest: read %q, %v; want it closed (EOF)", b, err)
	}
	// Its client learns it was closed when it writes (EPIPE), not by a
	// reply that answers nothing.
	if _, err := conns[0].c.Write([]byte(`{"command":"Ping"}` + "\n")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write on the evicted connection: %v, want EPIPE", err)
	}
	for _, i := range []int{1, maxConns / 2, maxConns - 1} {
		if got := conns[i].call(`{"command":"Ping"}`); got != okResult {
			t.Errorf("connection %d after the eviction: %s", i, got)
		}
	}
	if !strings.Contains(td.log.String(), `msg="control connection closed to make room: too many open" peer_pid=`) {
		t.Errorf("eviction not logged with the peer:\n%s", td.log)
	}
}

// TestConnectionLimitAllBusy fills every slot with a request the handler
// holds: nothing is idle, so a new connection is told `unavailable`, and
// served once the requests are answered.
func TestConnectionLimitAllBusy(t *testing.T) {
	dir, err := os.MkdirTemp("", "mcrbusy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "ctl.sock")
	ln, err := listenControl(path, "", testLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var held sync.WaitGroup
	held.Add(maxConns)
	srv := newServer(ln, func(req controlproto.Request) (controlproto.Response, durability) {
		if req.Command == controlproto.CmdGetConfig {
			held.Done()
			<-release
		}
		return controlproto.OK(nil), nil
	}, testLogger(nil))
	srv.start()
	t.Cleanup(srv.close)
	td := &testDaemon{path: path}
	conns := make([]*rawConn, maxConns)
	for i := range conns {
		conns[i] = td.dial(t)
		conns[i].send(`{"command":"GetConfig"}` + "\n")
	}
	held.Wait()
	over := td.dial(t)
	want := errReply("unavailable", "too many control connections (limit 256), all busy; try again later")
	if got := over.recv(); got != want {
		t.Errorf("connection over the limit got %s, want %s", got, want)
	}
	if _, err := over.br.ReadByte(); err != io.EOF {
		t.Errorf("connection over the limit not closed: %v", err)
	}
	close(release)
	for i, rc := range conns {
		if got := rc.recv(); got != okResult {
			t.Errorf("held request %d: %s", i, got)
		}
	}
	if !pingOnce(path) {
		t.Error("no new connection served after the held requests were answered")
	}
}

// TestIdleTimeout closes connections on which nothing happened for the
// idle timeout, whether they sent nothing or stalled in the middle of a
// line, and keeps one that keeps asking.
func TestIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	td := startTestDaemonWith(t, func(td *testDaemon) { td.srv.idleTimeout = idle })
	silent := td.dial(t)
	stalled := td.dial(t)
	stalled.send(`{"command":"Pi`)
	active := td.dial(t)
	start := time.Now()
	for time.Since(start) < 3*idle {
		if got := active.call(`{"command":"Ping"}`); got != okResult {
			t.Fatalf("active connection: %s", got)
		}
		time.Sleep(idle / 10)
	}
	for name, rc := range map[string]*rawConn{"silent": silent, "stalled mid-line": stalled} {
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := rc.br.ReadByte(); err != io.EOF {
			t.Errorf("%s connection after %v: read %q, %v; want it closed (EOF)", name, time.Since(start), b, err)
		}
	}
	if got := active.call(`{"command":"Ping"}`); got != okResult {
		t.Errorf("active connection after the others timed out: %s", got)
	}
}

// TestLargeReplyAfterLongIdle writes a reply of several write chunks to a
// client that was idle for longer than the write timeout, then to one that
// reads slowly but steadily: each gets its whole reply.
func TestLargeReplyAfterLongIdle(t *testing.T) {
	const write = time.Second // long enough that a loaded machine's late wake-ups stay inside one
	td := startTestDaemonWith(t, func(td *testDaemon) { td.srv.writeTimeout = write })
	c := td.client(t)
	ctx := context.Background()
	const n = 3000
	for i := range n {
		r := testRule(fmt.Sprintf("rule-%04d", i), "eth0", fmt.Sprintf("239.6.%d.%d", i/256, i%256), 5000, "eth1")
		if err := c.Call(ctx, controlproto.Request{Command: "AddRule", Rule: &r}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rc := td.dial(t)
	if got := rc.call(`{"command":"Ping"}`); got != okResult {
		t.Fatal(got)
	}
	time.Sleep(write + 200*time.Millisecond) // idle for longer than the write timeout: the point of the test
	reply := rc.call(`{"command":"ListRules"}`)
	if len(reply) < 8*replyChunk {
		t.Fatalf("ListRules reply of %d bytes, want several write chunks", len(reply))
	}
	var resp struct {
		OK     bool
		Result []controlproto.RuleStatus
	}
	if err := json.Unmarshal([]byte(reply), &resp); err != nil || !resp.OK || len(resp.Result) != n {
		t.Fatalf("ListRules after idling: %d bytes, %d rules, ok=%v, %v; want %d rules", len(reply), len(resp.Result), resp.OK, err, n)
	}

	// A slow reader: one write chunk per fifth of the write timeout, so
	// the whole reply takes twice the write timeout, but each chunk goes
	// within one.
	slow := td.dial(t)
	slow.send(`{"command":"ListRules"}` + "\n")
	var got []byte
	buf := make([]byte, replyChunk)
	for !strings.HasSuffix(string(got), "\n") {
		time.Sleep(write / 5)
		slow.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := slow.c.Read(buf)
		if err != nil {
			t.Fatalf("slow reader after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:k]...)
	}
	if string(got) != reply+"\n" {
		t.Errorf("slow reader got %d bytes, want the %d of the reply", len(got), len(reply)+1)
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
	if groups, sockets := td.groups.Count(); groups != n || sockets != (n+19)/20 {
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
	rc, unchanged := td.dialWithRuleA(t)
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
	unchanged("a rejected config")
}

// TestLoadConfigWithoutRules sends configs that lost their rules: none
// passes for an empty ruleset, and the rules stay.
func TestLoadConfigWithoutRules(t *testing.T) {
	td := startTestDaemon(t)
	rc, unchanged := td.dialWithRuleA(t)
	empty := filepath.Join(td.dir, "empty.json")
	if err := os.WriteFile(empty, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const missing = `rules: is required (an empty ruleset is written \"rules\": [])`
	for _, tc := range []struct{ name, req, want string }{
		{"inline {}", `{"command":"LoadConfig","config":{}}`, missing},
		{"inline null rules", `{"command":"LoadConfig","config":{"rules":null}}`,
			`rules: must be an array, got null (an empty ruleset is written \"rules\": [])`},
		{"file {}", `{"command":"LoadConfig","path":"` + empty + `"}`, "config " + empty + ": " + missing},
		{"check file {}", `{"command":"CheckConfig","path":"` + empty + `"}`, "config " + empty + ": " + missing},
	} {
		if got, want := rc.call(tc.req), `{"ok":false,"error":{"code":"invalid_argument","message":"`+tc.want+`"}}`; got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, want)
		}
	}
	unchanged("a config without rules")
	if got := rc.call(`{"command":"LoadConfig","config":{"rules":[]}}`); got != `{"ok":true,"result":{"added":0,"removed":1,"unchanged":0}}` {
		t.Errorf(`LoadConfig {"rules":[]}: %s, want every rule removed`, got)
	}
}

// TestConfigFileBounds has LoadConfig and CheckConfig read paths that are
// not config files: each is refused at once with an error that says why
// (nothing is read from /dev/zero or waited for on a FIFO), the ruleset is
// unchanged, and every request is logged with its sender and outcome.
func TestConfigFileBounds(t *testing.T) {
	td := startTestDaemon(t)
	rc, unchanged := td.dialWithRuleA(t)
	fifo := filepath.Join(td.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(td.dir, "huge.json")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxConfigSize+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{"/dev/zero", "read config: /dev/zero is not a regular file but a character device"},
		{fifo, "read config: " + fifo + " is not a regular file but a FIFO"},
		{td.dir, "read config: " + td.dir + " is not a regular file but a directory"},
		{huge, "read config: " + huge + " is larger than 256 MiB, the limit (a config of 100,000 rules is about half of it)"},
	}
	for _, tc := range cases {
		for _, cmd := range []string{"CheckConfig", "LoadConfig"} {
			start := time.Now()
			got := rc.call(`{"command":"` + cmd + `","path":"` + tc.path + `"}`)
			if want := errReply("invalid_argument", tc.want); got != want {
				t.Errorf("%s of %s:\n got %s\nwant %s", cmd, tc.path, got, want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s of %s took %v", cmd, tc.path, d)
			}
		}
	}
	unchanged("a refused config")
	logs := td.log.String()
	for _, want := range []string{
		`msg="control request" command=CheckConfig peer_pid=`,
		fmt.Sprintf("peer_uid=%d peer_gid=%d path=/dev/zero", os.Getuid(), os.Getgid()),
		`msg="control request failed" command=LoadConfig peer_pid=`,
		`path=/dev/zero code=invalid_argument err="read config: /dev/zero is not a regular file but a character device"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
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
		ln, err := listenControl(path, "", log)
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
		_, err := listenControl(td.path, "", log)
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
		ln, err := listenControl(path, "", log)
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
		_, err := listenControl(path, "", log)
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
