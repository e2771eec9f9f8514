package packaging

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
	"github.com/mcrelay/mcr/mcrctl"
	"github.com/mcrelay/mcr/mcrgen"
)

// datagrams is what the test sends through the relay: enough for every
// per-rule series to move, few enough to take a tenth of a second.
const datagrams = 300

// TestNamespaceRelays runs two relays the way mcrd@.service runs them, each
// in its own network namespace with its own config and socket, and checks
// what an operator of such a host relies on: `mcrctl --netns NAME` reaches
// the right relay, the relay in a namespace forwards the namespace's
// traffic, its workers run as the unit's account, and its /metrics export
// every metric the Grafana dashboard and the alert rules use.
func TestNamespaceRelays(t *testing.T) {
	netnstest.RequireRoot(t)
	lockHost(t)
	src, blue, sink := netnstest.New(t, "src"), netnstest.New(t, "blue"), netnstest.New(t, "sink")
	red := netnstest.New(t, "red")
	netnstest.Veth(t, src, "src0", []string{"10.77.0.1/24"}, blue, "in0", []string{"10.77.0.2/24"})
	netnstest.Veth(t, blue, "out0", []string{"10.78.0.1/24"}, sink, "sink0", []string{"10.78.0.2/24"})

	feed := `{"id": "feed", "input": {"interface": "in0", "group": "239.1.1.1", "port": 5000},
		"outputs": [{"interface": "out0", "group": "239.2.2.2", "port": 6000}]}`
	// red's input interface does not exist there: the rule waits, pending.
	other := `{"id": "red-only", "input": {"interface": "in9", "group": "239.3.3.3", "port": 5000},
		"outputs": [{"interface": "out9", "group": "239.4.4.4", "port": 6000}]}`
	// --exclusive-inputs, so that every metric mcrd can export is there.
	b := startUnitRelay(t, blue, feed, "--metrics-listen", "127.0.0.1:9477", "--exclusive-inputs")
	r := startUnitRelay(t, red, other)

	for _, tt := range []struct {
		relay *unitRelay
		want  []string
	}{{b, []string{"feed/active"}}, {r, []string{"red-only/pending"}}} {
		var rules []controlproto.RuleStatus
		tt.relay.ctlJSON(&rules, "list")
		var got []string
		for _, rs := range rules {
			got = append(got, rs.ID+"/"+rs.State)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("mcrctl --netns %s list (-want +got):\n%s", tt.relay.ns.Name, diff)
		}
	}

	// The workers run as the unit's account.
	var workers []controlproto.WorkerInfo
	b.ctlJSON(&workers, "workers")
	account, err := user.Lookup(workerAccount(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if uid := processUID(t, w.PID); uid != account.Uid {
			t.Errorf("worker %d (pid %d) runs as uid %s, want %s (%s)", w.Worker, w.PID, uid, account.Uid, account.Username)
		}
	}

	// Traffic through blue.
	var rcv *mcrgen.Receiver
	if err := sink.Do(func() (err error) {
		rcv, err = mcrgen.NewReceiver(mcrgen.RecvConfig{Interface: "sink0", Group: netip.MustParseAddr("239.2.2.2"),
			Port: 6000, Count: datagrams, Timeout: 20 * time.Second})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	got := make(chan mcrgen.RecvResult, 1)
	go func() { res, _ := rcv.Run(t.Context()); got <- res }()
	send := netnstest.Start(t, src, testbin.Path(t, "mcrgen"), "send", "--interface", "src0", "--group", "239.1.1.1",
		"--port", "5000", "--count", strconv.Itoa(datagrams), "--rate", "3000", "--size", "200")
	if err := send.Wait(20 * time.Second); err != nil {
		t.Fatalf("mcrgen send: %v\n%s", err, send.Output())
	}
	if res := <-got; res.Received != datagrams || res.Lost != 0 || res.Corrupt != 0 {
		t.Fatalf("through mcrd in %s: received %d, lost %d, corrupt %d; want %d intact", blue.Name,
			res.Received, res.Lost, res.Corrupt, datagrams)
	}

	var fams map[string]*dto.MetricFamily
	netnstest.Poll(t, 10*time.Second, 100*time.Millisecond,
		"the relay's /metrics to count the datagrams (mcr_rule_packets_in_total) and the exclusive input on in0", func() bool {
			fams = scrapeIn(t, blue, "127.0.0.1:9477")
			return sampleValue(fams["mcr_rule_packets_in_total"], "rule", "feed") == datagrams &&
				sampleValue(fams["mcr_exclusive_dropped_packets_total"], "interface", "in0") >= 0
		})
	exported := seriesNames(fams)
	t.Run("dashboard", func(t *testing.T) { checkNamesExported(t, dashboardExprs(t), exported) })
	t.Run("alerts", func(t *testing.T) { checkNamesExported(t, alertExprs(t), exported) })
}

// unitRelay is an mcrd started as mcrd@NAME.service starts it.
type unitRelay struct {
	t  *testing.T
	ns *netnstest.NS
}

// startUnitRelay starts mcrd in ns with the ExecStart of mcrd@.service for
// instance ns.Name, as systemd would after entering the namespace, plus
// flags (a drop-in's), and waits until it answers on its socket. Two things
// differ from the unit: the binary is the test's, and /etc/mcr is a
// temporary directory holding the one rule ruleJSON. The socket is the
// unit's, /run/mcr/netns/NAME/control.sock, so that `mcrctl --netns` finds
// it as an operator's would; the directory is removed when the test ends.
func startUnitRelay(t *testing.T, ns *netnstest.NS, ruleJSON string, flags ...string) *unitRelay {
	t.Helper()
	ensureWorkerAccount(t)
	etc := t.TempDir()
	if err := os.WriteFile(filepath.Join(etc, ns.Name+".json"), []byte(`{"rules": [`+ruleJSON+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	execStart := strings.ReplaceAll(readUnit(t, "mcrd@.service")["Service.ExecStart"][0], "%i", ns.Name)
	args := strings.Fields(strings.ReplaceAll(execStart, "/etc/mcr/", etc+"/"))
	if args[0] != installedBin {
		t.Fatalf("mcrd@.service starts %s, want %s", args[0], installedBin)
	}
	args = append(args[1:], "--num-workers", "1", "--stats-interval", "100ms")
	args = append(args, flags...)
	makeRuntimeDir(t, filepath.Dir(mcrctl.NetnsSocket(ns.Name)))
	testbin.Path(t, "mcrctl") // built before the wait below starts
	proc := netnstest.Start(t, ns, testbin.Path(t, "mcrd"), args...)
	t.Cleanup(func() {
		// As systemctl stop: SIGTERM, and mcrd removes its socket.
		_ = proc.Signal(syscall.SIGTERM)
		if err := proc.Wait(5 * time.Second); err != nil {
			t.Errorf("mcrd in %s after SIGTERM: %v", ns.Name, err)
		}
	})
	r := &unitRelay{t: t, ns: ns}
	netnstest.Poll(t, 10*time.Second, 50*time.Millisecond, "mcrd in "+ns.Name+" answering mcrctl --netns", func() bool {
		select {
		case <-proc.Done():
			t.Fatalf("mcrd in %s exited: %v\n%s", ns.Name, proc.Wait(0), proc.Output())
		default:
		}
		_, err := r.ctl("ping")
		return err == nil
	})
	netnstest.Poll(t, 10*time.Second, 50*time.Millisecond, "mcrd's workers in "+ns.Name+" running in sync", func() bool {
		var ws []controlproto.WorkerInfo
		r.ctlJSON(&ws, "workers")
		return len(ws) == 1 && ws[0].State == "running" && ws[0].InSync
	})
	return r
}

// ctl runs `mcrctl --netns NAME args...` from outside the namespace, as an
// operator on the host does, and returns its stdout.
func (r *unitRelay) ctl(args ...string) (string, error) {
	cmd := exec.Command(testbin.Path(r.t, "mcrctl"), append([]string{"--netns", r.ns.Name}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("mcrctl --netns %s %s: %w: %s", r.ns.Name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func (r *unitRelay) ctlJSON(v any, args ...string) {
	r.t.Helper()
	out, err := r.ctl(append([]string{"--json"}, args...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		r.t.Fatalf("mcrctl --json %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// makeRuntimeDir creates dir and the parents that are missing, as systemd
// does for RuntimeDirectory=. When the test ends it removes dir with what
// is in it, as systemd does at stop, and the parents it created if nothing
// else is in them (another test run's relays may be).
func makeRuntimeDir(t *testing.T, dir string) {
	t.Helper()
	var parents []string
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		parents = append(parents, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		for _, d := range parents { // deepest first
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
				t.Errorf("remove %s: %v", d, err)
			}
		}
	})
}

// ensureWorkerAccount creates the unit's worker account from sysusers.conf
// if this machine lacks it, as the packages and make install do.
func ensureWorkerAccount(t *testing.T) {
	t.Helper()
	if _, err := user.Lookup(workerAccount(t)); err == nil {
		return
	}
	conf, err := filepath.Abs("sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("skipping: no account " + workerAccount(t) + " and no systemd-sysusers to create it")
	}
	if out, err := exec.Command("systemd-sysusers", conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers %s: %v\n%s", conf, err, out)
	}
}

// processUID returns the real uid of pid.
func processUID(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "Uid:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("/proc/%d/status has no Uid line", pid)
	return ""
}

// scrapeIn scrapes http://addr/metrics from inside ns: the connection is
// made from a thread in the namespace, where the relay listens.
func scrapeIn(t *testing.T, ns *netnstest.NS, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to %s in %s: %v", addr, ns.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\nAccept: text/plain; version=0.0.4\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("scrape %s in %s: %v", addr, ns.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s in %s: %s", addr, ns.Name, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape of %s in %s: %v", addr, ns.Name, err)
	}
	return fams
}

// sampleValue is the value of f's sample whose label has value, or -1.
func sampleValue(f *dto.MetricFamily, label, value string) float64 {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// seriesNames are the names a query can select in a scrape: each family's,
// and for summaries and histograms the _sum, _count and _bucket series.
// Plus up, which Prometheus itself records for every target it scrapes.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{"up": true}
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_sum"], names[name+"_count"], names[name+"_bucket"] = true, true, true
		}
	}
	return names
}

// checkNamesExported fails for every metric an expression names that the
// scrape does not have.
func checkNamesExported(t *testing.T, exprs []namedExpr, exported map[string]bool) {
	t.Helper()
	if len(exprs) == 0 {
		t.Fatal("no expressions to check")
	}
	var missing []string
	for _, e := range exprs {
		names, err := metricNames(e.expr)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", e.where, e.expr)
		}
		for _, n := range names {
			if !exported[n] {
				missing = append(missing, fmt.Sprintf("%s: %s", e.where, n))
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("metrics mcrd does not export:\n%s", strings.Join(slices.Compact(missing), "\n"))
	}
}
