package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
)

// startAutosaveDaemon is startTestDaemon with --config-autosave on, its
// --config holding no rules.
func startAutosaveDaemon(t testing.TB) *testDaemon {
	t.Helper()
	td := startTestDaemon(t)
	if err := os.WriteFile(td.d.configPath, []byte(`{"rules":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	td.d.autosave = newAutosaver(td.d.configPath, td.d.log, td.master.encodedConfig)
	return td
}

// savedIDs returns the ids of the rules in the config file at path.
func savedIDs(t testing.TB, path string) []string {
	t.Helper()
	c, err := readConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, r := range c.Rules {
		ids = append(ids, r.ID)
	}
	return ids
}

// TestAutosaveBeforeReply checks that each change an operator makes is in
// --config when its reply arrives: AddRule, RemoveRule and LoadConfig. A
// LoadConfig that changes nothing, and commands that change nothing, do
// not write.
func TestAutosaveBeforeReply(t *testing.T) {
	td := startAutosaveDaemon(t)
	rc := td.dial(t)
	steps := []struct {
		name, req string
		want      []string
	}{
		{"AddRule", `{"command":"AddRule","rule":` + ruleA + `}`, []string{"a"}},
		{"AddRule with another id", `{"command":"AddRule","rule":` + strings.NewReplacer(`"a"`, `"b"`, "239.1.1.1", "239.1.1.9").Replace(ruleA) + `}`,
			[]string{"a", "b"}},
		{"RemoveRule", `{"command":"RemoveRule","id":"a"}`, []string{"b"}},
		{"LoadConfig", `{"command":"LoadConfig","config":{"rules":[` + ruleA + `]}}`, []string{"a"}},
	}
	for _, st := range steps {
		if got := rc.call(st.req); !strings.HasPrefix(got, `{"ok":true`) {
			t.Fatalf("%s: %s", st.name, got)
		}
		if diff := cmp.Diff(st.want, savedIDs(t, td.d.configPath)); diff != "" {
			t.Errorf("--config after %s (-want +got):\n%s", st.name, diff)
		}
	}
	writes := td.d.autosave.writes
	rc.call(`{"command":"LoadConfig","config":{"rules":[` + ruleA + `]}}`)
	rc.call(`{"command":"ListRules"}`)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`) // already exists
	if got := td.d.autosave.writes; got != writes {
		t.Errorf("%d writes for requests that changed nothing, want none", got-writes)
	}
}

// TestAutosaveFailureIsNotAcknowledged makes --config a directory: the
// AddRule is in effect but its reply is not_saved, saying so. Once the
// path is a file again, the next change saves both rules.
func TestAutosaveFailureIsNotAcknowledged(t *testing.T) {
	td := startAutosaveDaemon(t)
	rc := td.dial(t)
	if err := os.Remove(td.d.configPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(td.d.configPath, 0o755); err != nil {
		t.Fatal(err)
	}
	want := errReply(controlproto.CodeNotSaved, `rule "a" added and in effect, but not saved to `+td.d.configPath+
		`, so mcrd would start without it: save config: `+td.d.configPath+` is a directory, not a regular file`)
	if got := rc.call(`{"command":"AddRule","rule":` + ruleA + `}`); got != want {
		t.Errorf("AddRule with --config a directory:\n got %s\nwant %s", got, want)
	}
	if diff := cmp.Diff([]string{"a"}, td.dp.ids()); diff != "" {
		t.Errorf("data plane after the unsaved add (-want +got):\n%s", diff)
	}
	if err := os.Remove(td.d.configPath); err != nil {
		t.Fatal(err)
	}
	b := strings.NewReplacer(`"a"`, `"b"`, "239.1.1.1", "239.1.1.9").Replace(ruleA)
	if got := rc.call(`{"command":"AddRule","rule":` + b + `}`); got != `{"ok":true,"result":{"id":"b"}}` {
		t.Errorf("AddRule once --config can be written: %s", got)
	}
	if diff := cmp.Diff([]string{"a", "b"}, savedIDs(t, td.d.configPath)); diff != "" {
		t.Errorf("--config after the failure (-want +got):\n%s", diff)
	}
}

// sendAddRules pipelines n AddRules (r0, r1, …) on one connection to td
// and checks every reply.
func sendAddRules(t testing.TB, td *testDaemon, n int) {
	t.Helper()
	var buf strings.Builder
	for i := range n {
		fmt.Fprintf(&buf, `{"command":"AddRule","rule":{"id":"r%d","input":{"interface":"eth0","group":"239.4.%d.%d","port":5000},"outputs":[{"interface":"eth1","group":"239.5.%d.%d","port":6000}]}}`+"\n",
			i, i/256, i%256, i/256, i%256)
	}
	rc := td.dial(t)
	go io.WriteString(rc.c, buf.String())
	for i := range n {
		if got, want := rc.recv(), fmt.Sprintf(`{"ok":true,"result":{"id":"r%d"}}`, i); got != want {
			t.Fatalf("reply %d: %s, want %s", i, got, want)
		}
	}
}

// pipelineAutosaved pipelines n AddRules on one connection of a daemon
// with autosave on and checks every reply and the file; it returns how
// many writes the daemon made.
func pipelineAutosaved(t testing.TB, n int) int {
	td := startAutosaveDaemon(t)
	sendAddRules(t, td, n)
	if got := len(savedIDs(t, td.d.configPath)); got != n {
		t.Errorf("--config holds %d rules after %d acknowledged adds", got, n)
	}
	return td.d.autosave.writes
}

// TestPipelinedAddRuleAutosaved pipelines 5,000 AddRules with autosave on:
// all are saved before their replies, in far fewer writes than changes.
func TestPipelinedAddRuleAutosaved(t *testing.T) {
	const n = 5000
	start := time.Now()
	writes := pipelineAutosaved(t, n)
	t.Logf("%d pipelined AddRules saved in %d writes, %v", n, writes, time.Since(start).Round(time.Millisecond))
	if writes > n/10 {
		t.Errorf("%d writes for %d pipelined changes: they were not grouped", writes, n)
	}
}

// BenchmarkPipelinedAddRuleAutosaved is BenchmarkPipelinedAddRule with
// every change saved to --config before its reply.
func BenchmarkPipelinedAddRuleAutosaved(b *testing.B) {
	const n = 5000
	start := time.Now()
	for range b.N {
		pipelineAutosaved(b, n)
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "rules/s")
}

// TestAutosaveConcurrentClients adds rules from many connections at once:
// every acknowledged rule is in the file.
func TestAutosaveConcurrentClients(t *testing.T) {
	td := startAutosaveDaemon(t)
	const clients, each = 8, 50
	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			cl, err := controlproto.Dial(context.Background(), td.path)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for i := range each {
				r := ruleset.Rule{ID: fmt.Sprintf("c%d-%d", c, i),
					Input:   ruleset.Input{Interface: "eth0", Group: fmt.Sprintf("239.6.%d.%d", c, i), Port: 5000},
					Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.7.7.7", Port: 6000}}}
				if err := cl.Call(context.Background(), controlproto.Request{Command: "AddRule", Rule: &r}, nil); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(savedIDs(t, td.d.configPath)); got != clients*each {
		t.Errorf("--config holds %d rules, want %d", got, clients*each)
	}
}

// TestSaveConfigRefusesNonRegularTargets saves to paths that are not
// regular files: each is refused with a clear error before any temporary
// file is made. A symbolic link to a file is followed: the file gets the
// config and the link stays.
func TestSaveConfigRefusesNonRegularTargets(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	fifo := filepath.Join(dir, "fifo")
	dangling := filepath.Join(dir, "dangling")
	toDir := filepath.Join(dir, "to-dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sub, toDir); err != nil {
		t.Fatal(err)
	}
	config := func() ([]byte, error) {
		return ruleset.EncodeConfig(ruleset.Config{Rules: []ruleset.Rule{testRule("a", "eth0", "239.1.1.1", 5000, "eth1")}})
	}
	for _, tc := range []struct{ path, want string }{
		{sub, "save config: " + sub + " is a directory, not a regular file"},
		{fifo, "save config: " + fifo + " is a FIFO, not a regular file"},
		{"/dev/null", "save config: /dev/null is a character device, not a regular file"},
		{dangling, "save config: " + dangling + " is a symbolic link to nothing"},
		{toDir, "save config: " + toDir + " links to " + sub + ", a directory, not a regular file"},
	} {
		err := writeConfigFile(tc.path, config)
		if err == nil || err.Error() != tc.want {
			t.Errorf("save to %s: %v, want %q", tc.path, err, tc.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"dangling", "fifo", "sub", "to-dir"}, names); diff != "" {
		t.Errorf("directory after refused saves (-want +got):\n%s", diff)
	}

	real, link := filepath.Join(sub, "real.json"), filepath.Join(dir, "link.json")
	if err := os.WriteFile(real, []byte(`{"rules":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := writeConfigFile(link, config); err != nil {
		t.Fatalf("save through a symbolic link: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link after a save through it: %v, %v; want it still a link", fi, err)
	}
	if diff := cmp.Diff([]string{"a"}, savedIDs(t, real)); diff != "" {
		t.Errorf("the file the link points to (-want +got):\n%s", diff)
	}
}

// TestSaveConfigRemovesStaleTemporaryFiles leaves temporary files of the
// config's pattern as a killed save would (a process that is gone, and
// this one) next to one of a live process and files of other names: a
// save removes exactly the stale ones.
func TestSaveConfigRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.json")
	stale := []string{
		".rules.json.tmp-999999999-123",                    // a process that is gone
		fmt.Sprintf(".rules.json.tmp-%d-456", os.Getpid()), // this one, not saving now
		".rules.json.tmp-3819283746",                       // the older pattern, without a pid
	}
	kept := []string{
		".rules.json.tmp-1-789", // pid 1 lives: maybe another daemon saving
		".other.json.tmp-999999999-1",
		"rules.json.bak",
	}
	for _, name := range append(append([]string{}, stale...), kept...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"rul`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeConfigFile(path, func() ([]byte, error) { return ruleset.EncodeConfig(ruleset.Config{}) }); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{".other.json.tmp-999999999-1", ".rules.json.tmp-1-789", "rules.json", "rules.json.bak"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("directory after a save (-want +got):\n%s", diff)
	}
}

// TestConfigEntries checks that the file autosave assembles from each
// rule's cached part is byte for byte what ruleset.EncodeConfig writes,
// for no rule, one, and several with every optional field.
func TestConfigEntries(t *testing.T) {
	tm := newTestMaster(t)
	check := func(what string) {
		t.Helper()
		checkEncodedConfig(t, tm, what)
	}
	check("no rule")
	addRules(testRule("b", "eth0", "239.1.1.2", 5000, "eth1"))(tm)
	check("one rule")
	addRules(ruleset.Rule{ID: "a", Name: `market "A" <fast> & φ`,
		Input: ruleset.Input{Interface: "eth0.100", Group: "ff3e::1", Port: 5004, Source: "fd00::9"},
		Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000, TTL: 8, Source: "10.0.0.1"},
			{Interface: "eth2", Group: "10.1.0.50", Port: 6001}}})(tm)
	check("two rules, every field")
	tm.replace([]ruleset.Rule{testRule("b", "eth0", "239.1.1.3", 5000, "eth1")})
	check("a rule changed, one gone")
}

// checkEncodedConfig checks that tm's encodedConfig is byte for byte what
// ruleset.EncodeConfig writes for its config, and returns it.
func checkEncodedConfig(t *testing.T, tm *testMaster, what string) []byte {
	t.Helper()
	got, _, err := tm.encodedConfig()
	if err != nil {
		t.Fatal(err)
	}
	want, err := ruleset.EncodeConfig(tm.config())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s: encodedConfig differs from EncodeConfig (-want +got):\n%s", what, diff)
	}
	return got
}
