package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
	"github.com/mcrelay/mcr/ruleset"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// daemon is a real mcrd supervisor process with --config.
type daemon struct {
	t      *testing.T
	ns     *netnstest.NS // nil: the test's own namespace
	dir    string
	config string
	socket string
	flags  []string // more flags of mcrd supervisor
	proc   *netnstest.Proc
}

// newDaemon prepares a directory with an empty --config. As root the
// daemon runs in a namespace of its own; without root in the test's, where
// its rules stay pending on interfaces that do not exist and touch nothing.
func newDaemon(t *testing.T) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcrd") // short: unix socket paths end at 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{t: t, dir: dir, config: filepath.Join(dir, "mcr.json"), socket: filepath.Join(dir, "ctl.sock")}
	if os.Geteuid() == 0 && os.Getenv("MCR_SKIP_PRIVILEGED") != "1" {
		d.ns = netnstest.New(t, "save")
	}
	if err := os.WriteFile(d.config, []byte(`{"rules":[]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs mcrd and waits until it answers Ping.
func (d *daemon) start() {
	d.t.Helper()
	d.proc = netnstest.Start(d.t, d.ns, testbin.Path(d.t, "mcrd"), append([]string{"supervisor", "--config", d.config,
		"--control-socket", d.socket, "--num-workers", "1", "--worker-user", "nobody"}, d.flags...)...)
	netnstest.WaitFor(d.t, 10*time.Second, "mcrd answering Ping", func() bool {
		select {
		case <-d.proc.Done():
			d.t.Fatalf("mcrd exited: %v\n%s", d.proc.Wait(0), d.proc.Output())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := controlproto.Dial(ctx, d.socket)
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Call(ctx, controlproto.Request{Command: "Ping"}, nil) == nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	d.t.Helper()
	if err := d.proc.Signal(syscall.SIGKILL); err != nil {
		d.t.Fatal(err)
	}
	_ = d.proc.Wait(10 * time.Second) // killed: the error is the signal
}

// ruleIDs returns the ids ListRules returns.
func (d *daemon) ruleIDs() []string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controlproto.Dial(ctx, d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	var list []controlproto.RuleStatus
	if err := c.Call(ctx, controlproto.Request{Command: "ListRules"}, &list); err != nil {
		d.t.Fatal(err)
	}
	ids := []string{}
	for _, rs := range list {
		ids = append(ids, rs.ID)
	}
	return ids
}

// addRequest is the AddRule line of rule "r<i>", on an interface that does
// not exist.
func addRequest(i int) string {
	return fmt.Sprintf(`{"command":"AddRule","rule":{"id":"r%d","input":{"interface":"mcrnone0","group":"239.4.%d.%d","port":5000},`+
		`"outputs":[{"interface":"mcrnone1","group":"239.5.%d.%d","port":6000}]}}`+"\n", i, i/256%256, i%256, i/256%256, i%256)
}

// pipeline sends the AddRules of rules from..to-1 on one connection without
// waiting, then reads the replies; it returns the ids acknowledged with ok
// before the connection ended, and how long that took. When killAt > 0,
// the daemon is killed (SIGKILL) the moment that many are acknowledged.
func (d *daemon) pipeline(from, to, killAt int) (acked []string, took time.Duration) {
	d.t.Helper()
	conn, err := net.Dial("unix", d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	defer conn.Close()
	var reqs strings.Builder
	for i := from; i < to; i++ {
		reqs.WriteString(addRequest(i))
	}
	start := time.Now()
	go conn.Write([]byte(reqs.String()))
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(conn)
	for i := from; i < to; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		if want := fmt.Sprintf(`{"ok":true,"result":{"id":"r%d"}}`+"\n", i); line != want {
			d.t.Fatalf("reply to AddRule r%d: %q, want %q", i, line, want)
		}
		acked = append(acked, fmt.Sprintf("r%d", i))
		if len(acked) == killAt {
			d.kill()
		}
	}
	return acked, time.Since(start)
}

// savedIDs reads --config as the daemon would and returns its rule ids.
func (d *daemon) savedIDs() []string {
	d.t.Helper()
	data, err := os.ReadFile(d.config)
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := ruleset.DecodeConfig(data)
	if err != nil {
		d.t.Fatalf("--config after the kill is not a valid config (%v):\n%s", err, data)
	}
	ids := []string{}
	for _, r := range c.Rules {
		ids = append(ids, r.ID)
	}
	return ids
}

// dirNames lists the directory of --config.
func (d *daemon) dirNames() []string {
	d.t.Helper()
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// sortedIDs sorts rule ids as ListRules and the config file do.
func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestAcknowledgedAddsSurviveKill adds 300 rules, pipelined, with --config,
// kills mcrd with SIGKILL the moment the last reply is read, and starts it
// again: every acknowledged rule is there.
func TestAcknowledgedAddsSurviveKill(t *testing.T) {
	d := newDaemon(t)
	d.start()
	acked, _ := d.pipeline(0, 300, 300)
	if len(acked) != 300 {
		t.Fatalf("%d of 300 AddRules acknowledged", len(acked))
	}
	if diff := cmp.Diff(sortedIDs(acked), d.savedIDs()); diff != "" {
		t.Errorf("--config after kill -9 (-want +got):\n%s", diff)
	}
	d.start()
	if diff := cmp.Diff(sortedIDs(acked), d.ruleIDs()); diff != "" {
		t.Errorf("rules after the restart (-want +got):\n%s", diff)
	}
}

// TestPipelinedAddsAutosaved times 5,000 pipelined AddRules on a real mcrd
// that saves each before its reply, and checks the file holds them all;
// beside it, for comparison in the same run, the same on an mcrd with
// --config-autosave=false.
func TestPipelinedAddsAutosaved(t *testing.T) {
	const n = 5000
	rate := func(took time.Duration) string {
		return fmt.Sprintf("%v (%.0f rules/s)", took.Round(time.Millisecond), n/took.Seconds())
	}
	plain := newDaemon(t)
	plain.flags = []string{"--config-autosave=false"}
	plain.start()
	_, tookPlain := plain.pipeline(0, n, 0)
	if got := len(plain.savedIDs()); got != 0 {
		t.Errorf("--config-autosave=false: --config holds %d rules, want the file left alone", got)
	}

	d := newDaemon(t)
	d.start()
	acked, took := d.pipeline(0, n, 0)
	if len(acked) != n {
		t.Fatalf("%d of %d AddRules acknowledged", len(acked), n)
	}
	t.Logf("%d pipelined AddRules: each saved to --config before its reply %s; --config-autosave=false %s",
		n, rate(took), rate(tookPlain))
	if took > 30*time.Second {
		t.Errorf("%d pipelined AddRules took %v", n, took)
	}
	if got := len(d.savedIDs()); got != n {
		t.Errorf("--config holds %d rules, want %d", got, n)
	}
}

// TestSaveKilledMidway kills mcrd with SIGKILL after a random number of
// acknowledged adds of a pipelined stream, while the saves of the rest are
// under way, four times: --config is always a whole, valid config holding
// every acknowledged rule (and perhaps some whose reply the kill cut off),
// and a temporary file a killed save left is gone once mcrd has started
// again.
func TestSaveKilledMidway(t *testing.T) {
	d := newDaemon(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	var acked []string
	next, leftovers := 0, 0
	for round := range 4 {
		d.start()
		if diff := cmp.Diff([]string{"ctl.sock", "mcr.json"}, d.dirNames()); diff != "" {
			t.Errorf("round %d: directory after the start (-want +got):\n%s", round, diff)
		}
		killAt := 1 + rng.IntN(1500)
		got, _ := d.pipeline(next, next+2000, killAt)
		// Replies the daemon sent before it died are read after the
		// kill: they count too.
		if len(got) < killAt {
			t.Fatalf("round %d (seed %d): %d adds acknowledged, want at least the %d before the kill", round, seed, len(got), killAt)
		}
		acked = append(acked, got...)
		next += 2000
		saved := d.savedIDs()
		missing := map[string]bool{}
		for _, id := range acked {
			missing[id] = true
		}
		for _, id := range saved {
			delete(missing, id)
		}
		if len(missing) > 0 {
			t.Fatalf("round %d (seed %d): %d acknowledged rules missing from --config after kill -9", round, seed, len(missing))
		}
		names := d.dirNames()
		leftovers += len(names) - 2
		t.Logf("round %d: killed after %d acknowledged adds (%d read in all); --config holds %d rules; directory %v",
			round, killAt, len(got), len(saved), names)
	}
	d.start()
	if diff := cmp.Diff([]string{"ctl.sock", "mcr.json"}, d.dirNames()); diff != "" {
		t.Errorf("directory after the last start (-want +got):\n%s", diff)
	}
	t.Logf("%d temporary files left by killed saves, removed at the next start", leftovers)
}
