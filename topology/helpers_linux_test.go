package topology

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
	"github.com/mcrelay/mcr/mcrgen"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// statsInterval is every daemon's --stats-interval: the default. The
// supervisor restarts a worker that sent no snapshot for three intervals,
// and on a small shared machine a worker can be starved of CPU for a second
// by someone else's load; a shorter interval would turn that into
// restarts and lost datagrams. Scenarios wait for counters to settle
// instead.
const statsInterval = time.Second

// recvTimeout is the overall deadline of every receiver: a stream that
// loses datagrams ends there instead of hanging the test.
const recvTimeout = 20 * time.Second

// pollEvery is how often waitFor checks its condition. Most conditions run
// mcrctl, a process start each: 20 a second is prompt and cheap.
const pollEvery = 50 * time.Millisecond

func TestMain(m *testing.M) { testbin.Main(m) }

// waitFor polls cond every pollEvery until it returns true or timeout
// passes, then fails the test with what it was waiting for.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	netnstest.Poll(t, timeout, pollEvery, what, cond)
}

// ---- the daemon ----------------------------------------------------------

// daemon is an `mcrd supervisor` running in a namespace, driven with mcrctl.
type daemon struct {
	t       *testing.T
	ns      *netnstest.NS
	socket  string
	workers int
	proc    *netnstest.Proc
}

// daemonOptions are the flags a scenario sets; zero values are defaults.
type daemonOptions struct {
	// Workers is --num-workers (default 1: one is enough for the rates
	// here, and leaves the second core to the traffic).
	Workers int
	// Config is --config (default none).
	Config string
	// Flags are more flags of `mcrd supervisor`.
	Flags []string
	// Wrap, when set, is a command mcrd runs under, given mcrd's path and
	// arguments after its own (`capsh --drop=cap_net_raw -- -c 'exec "$0" "$@"'`).
	Wrap []string
}

// startDaemon starts mcrd in ns and returns once it answers ping and all
// its workers run with the (possibly empty) ruleset. When the test ends the
// daemon gets SIGTERM, then SIGKILL if it is still there after 5 s.
func startDaemon(t *testing.T, ns *netnstest.NS, opt daemonOptions) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcrtopo") // short: unix socket paths end at 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{t: t, ns: ns, socket: filepath.Join(dir, "control.sock"), workers: max(opt.Workers, 1)}
	args := []string{"supervisor", "--control-socket", d.socket, "--num-workers", strconv.Itoa(d.workers),
		"--stats-interval", statsInterval.String()}
	if opt.Config != "" {
		args = append(args, "--config", opt.Config)
	}
	args = append(args, opt.Flags...)
	testbin.Path(t, "mcrctl") // build before the clock of the wait below starts
	name := testbin.Path(t, "mcrd")
	if len(opt.Wrap) > 0 {
		name, args = opt.Wrap[0], append(append(slices.Clone(opt.Wrap[1:]), name), args...)
	}
	d.proc = netnstest.Start(t, ns, name, args...)
	t.Cleanup(func() {
		select {
		case <-d.proc.Done():
		default:
			_ = d.proc.Signal(syscall.SIGTERM)
			if err := d.proc.Wait(5 * time.Second); err != nil {
				t.Logf("mcrd in %s after SIGTERM: %v", ns.Name, err)
			}
		}
	})
	waitFor(t, 10*time.Second, "mcrd answering ping in "+ns.Name, func() bool {
		d.checkRunning()
		_, err := d.ctl("ping")
		return err == nil
	})
	d.waitReady()
	return d
}

// checkRunning fails the test if the daemon has exited.
func (d *daemon) checkRunning() {
	d.t.Helper()
	select {
	case <-d.proc.Done():
		d.t.Fatalf("mcrd in %s exited: %v\n%s", d.ns.Name, d.proc.Wait(0), d.proc.Output())
	default:
	}
}

// ctl runs `mcrctl --socket S args...` and returns its stdout; the error
// carries the exit status and stderr.
func (d *daemon) ctl(args ...string) (string, error) {
	cmd := exec.Command(testbin.Path(d.t, "mcrctl"), append([]string{"--socket", d.socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("mcrctl %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String(), nil
}

// ctlJSON runs `mcrctl --json args...` and decodes its result into result.
func (d *daemon) ctlJSON(result any, args ...string) {
	d.t.Helper()
	out, err := d.ctl(append([]string{"--json"}, args...)...)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), result); err != nil {
		d.t.Fatalf("decode the output of mcrctl --json %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// add adds r with `mcrctl add` and returns its id. All outputs share the
// TTL, preserve_source and when_joined of the first, as --ttl,
// --preserve-source and --when-joined set them all.
func (d *daemon) add(r ruleset.Rule) string {
	d.t.Helper()
	var res controlproto.IDResult
	d.ctlJSON(&res, addArgs(r)...)
	return res.ID
}

// addArgs is the `mcrctl add` command line of r.
func addArgs(r ruleset.Rule) []string {
	args := []string{"add", "--input-interface", r.Input.Interface, "--input-group", r.Input.Group,
		"--input-port", strconv.Itoa(r.Input.Port)}
	if r.Input.Source != "" {
		args = append(args, "--input-source", r.Input.Source)
	}
	if r.ID != "" {
		args = append(args, "--rule-id", r.ID)
	}
	outs := make([]string, len(r.Outputs))
	for i, o := range r.Outputs {
		group := o.Group
		if strings.Contains(group, ":") {
			group = "[" + group + "]"
		}
		outs[i] = fmt.Sprintf("%s:%d:%s", group, o.Port, o.Interface)
		if o.SourcePort != 0 {
			outs[i] += ":" + strconv.Itoa(o.SourcePort)
		}
	}
	args = append(args, "--outputs", strings.Join(outs, ","))
	if ttl := r.Outputs[0].TTL; ttl != 0 {
		args = append(args, "--ttl", strconv.Itoa(ttl))
	}
	if r.Outputs[0].PreserveSource {
		args = append(args, "--preserve-source")
	}
	if r.Outputs[0].WhenJoined {
		args = append(args, "--when-joined")
	}
	return args
}

// stats returns `mcrctl --json stats`.
func (d *daemon) stats() stats.Report {
	d.t.Helper()
	var r stats.Report
	d.ctlJSON(&r, "stats")
	return r
}

// workerList returns `mcrctl --json workers`.
func (d *daemon) workerList() []controlproto.WorkerInfo {
	d.t.Helper()
	var w []controlproto.WorkerInfo
	d.ctlJSON(&w, "workers")
	return w
}

// rules returns `mcrctl --json list`.
func (d *daemon) rules() []controlproto.RuleStatus {
	d.t.Helper()
	var r []controlproto.RuleStatus
	d.ctlJSON(&r, "list")
	return r
}

// synced reports whether all the daemon's workers run and hold its current
// ruleset. The supervisor updates the ruleset hash it expects before it
// answers a change, so after an add or remove this turns true only once
// every worker has applied it.
func (d *daemon) synced() bool {
	d.checkRunning()
	ws := d.workerList()
	if len(ws) != d.workers {
		return false
	}
	for _, w := range ws {
		if w.State != "running" || !w.InSync {
			return false
		}
	}
	return true
}

// killWorkers kills every worker of the daemon with SIGKILL and waits
// until each slot runs a new one and all hold the ruleset.
func (d *daemon) killWorkers() {
	d.t.Helper()
	before := d.workerList()
	for _, w := range before {
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			d.t.Fatalf("kill worker %d: %v", w.PID, err)
		}
	}
	waitFor(d.t, 10*time.Second, "every killed worker to be restarted and in sync", func() bool {
		for i, w := range d.workerList() {
			if w.PID == before[i].PID || w.Restarts <= before[i].Restarts {
				return false
			}
		}
		return d.synced()
	})
}

// waitReady waits until the daemon's workers run in sync and all its
// rules are active: their input interfaces up and their groups joined. A
// veth comes up (IFF_RUNNING) only when the kernel's link watch gets to
// it, up to a second after `ip link set up`.
func (d *daemon) waitReady() {
	d.t.Helper()
	waitFor(d.t, 10*time.Second, "mcrd in "+d.ns.Name+" to run its rules, all active, in sync", func() bool {
		if !d.synced() {
			return false
		}
		for _, r := range d.rules() {
			if r.State != controlproto.StateActive {
				return false
			}
		}
		return true
	})
}

// ruleReport returns rule id's entry in r, failing the test if absent.
func ruleReport(t testing.TB, r stats.Report, id string) stats.RuleReport {
	t.Helper()
	for _, rr := range r.Rules {
		if rr.ID == id {
			return rr
		}
	}
	t.Fatalf("rule %q not in the stats: %+v", id, r.Rules)
	return stats.RuleReport{}
}

// waitCounted waits until rule id has counted at least n datagrams in and
// on every output, and returns its report.
func (d *daemon) waitCounted(id string, n uint64) stats.RuleReport {
	d.t.Helper()
	return d.waitCountedSince(stats.RuleReport{}, id, n)
}

// waitCountedSince waits until rule id has counted at least n datagrams
// more than base, in and on every output, and returns the counts since
// base. The supervisor's counters only grow; a base is how a scenario
// counts one stream of several.
func (d *daemon) waitCountedSince(base stats.RuleReport, id string, n uint64) stats.RuleReport {
	d.t.Helper()
	var rr stats.RuleReport
	netnstest.PollErr(d.t, 5*time.Second, pollEvery, func() error {
		if rr = since(ruleReport(d.t, d.stats(), id), base); !counted(rr, n) {
			return fmt.Errorf("rule %s of mcrd in %s: want %d datagrams in and out, counted %+v", id, d.ns.Name, n, rr)
		}
		return nil
	})
	return rr
}

// settledReport waits until rule id's counters have stayed the same for
// two stats intervals, so every worker has reported all it counted (a
// worker reports once per interval), and returns them.
func (d *daemon) settledReport(id string) stats.RuleReport {
	d.t.Helper()
	last := ruleReport(d.t, d.stats(), id)
	since := time.Now()
	waitFor(d.t, 10*time.Second, "the counters of rule "+id+" to settle", func() bool {
		rr := ruleReport(d.t, d.stats(), id)
		if !cmp.Equal(rr, last, cmpopts.IgnoreFields(stats.RuleReport{}, "PPS", "BPS")) {
			last, since = rr, time.Now()
		}
		return time.Since(since) > 2*statsInterval
	})
	return last
}

// counted reports whether rr counts at least n datagrams in and on every
// output.
func counted(rr stats.RuleReport, n uint64) bool {
	if rr.PacketsIn < n {
		return false
	}
	for _, o := range rr.Outputs {
		if o.PacketsOut < n {
			return false
		}
	}
	return true
}

// since returns rr's counters minus base's; base may have no outputs.
func since(rr, base stats.RuleReport) stats.RuleReport {
	rr.PacketsIn -= base.PacketsIn
	rr.BytesIn -= base.BytesIn
	rr.Outputs = slices.Clone(rr.Outputs)
	for i := range min(len(rr.Outputs), len(base.Outputs)) {
		rr.Outputs[i].PacketsOut -= base.Outputs[i].PacketsOut
		rr.Outputs[i].BytesOut -= base.Outputs[i].BytesOut
		rr.Outputs[i].Errors -= base.Outputs[i].Errors
		rr.Outputs[i].NotSentIdle -= base.Outputs[i].NotSentIdle
	}
	return rr
}

// checkCounted waits until rule id has counted n datagrams of size bytes,
// then checks it counted exactly that, in and on each of dests, without
// errors.
func (d *daemon) checkCounted(id string, n uint64, size int, dests ...string) {
	d.t.Helper()
	d.checkCountedSince(stats.RuleReport{}, id, n, size, dests...)
}

// checkCountedSince is checkCounted for the counts since base.
func (d *daemon) checkCountedSince(base stats.RuleReport, id string, n uint64, size int, dests ...string) {
	d.t.Helper()
	got := d.waitCountedSince(base, id, n)
	want := stats.RuleReport{ID: id, PacketsIn: n, BytesIn: n * uint64(size)}
	for _, dst := range dests {
		want.Outputs = append(want.Outputs, stats.OutputReport{Destination: dst, PacketsOut: n, BytesOut: n * uint64(size)})
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(stats.RuleReport{}, "PPS", "BPS"),
		cmpopts.IgnoreFields(stats.OutputReport{}, "State")); diff != "" {
		d.t.Errorf("stats of rule %s in %s (-want +got):\n%s", id, d.ns.Name, diff)
	}
}

// ---- rules ----------------------------------------------------------------

// rule builds a rule from input ifname, group and port to outputs.
func rule(id, ifname, group string, port int, outputs ...ruleset.Output) ruleset.Rule {
	return ruleset.Rule{ID: id, Input: ruleset.Input{Interface: ifname, Group: group, Port: port}, Outputs: outputs}
}

// out builds an output.
func out(group string, port int, ifname string) ruleset.Output {
	return ruleset.Output{Interface: ifname, Group: group, Port: port}
}

// dest is an output's destination as the stats name it.
func dest(group string, port int, ifname string) string {
	return out(group, port, ifname).Destination()
}

// writeConfig writes rules as a --config file at path.
func writeConfig(t testing.TB, path string, rules ...ruleset.Rule) {
	t.Helper()
	b, err := ruleset.EncodeConfig(ruleset.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	// Written aside and renamed, as an operator's editor or tool would: a
	// reload never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// ---- traffic --------------------------------------------------------------

// stream is what one `mcrgen send` sends.
type stream struct {
	Interface, Group string
	Port             int
	Count            uint64
	Rate             int // datagrams per second
	Size             int // payload bytes; 0 sends empty datagrams
	TTL              int // 0: mcrgen's default (1 for multicast)
	StreamID         int // 0: mcrgen's default (random)
	// CPUs, when set, pins the sender to these cores (taskset -c): on a
	// veth the receiving side's softirq runs on the sender's core, and the
	// cpu fanout mode hands the packet to the worker of that core.
	CPUs string
	// Hop, when set, moves the sender between these cores (mcrgen
	// --hop-cpus, 50 datagrams on each in turn): the stream reaches the
	// relay on each of them.
	Hop string
	// SourcePort, when set, is the sender's UDP port: runs from one port
	// are one flow, which the hash fanout keeps on one worker.
	SourcePort int
}

// newStream is a stream of 2,000 datagrams of 1,000 bytes at 10,000 per
// second: long enough to show loss and short enough to cost 0.2 s.
func newStream(ifname, group string, port int) stream {
	return stream{Interface: ifname, Group: group, Port: port, Count: 2000, Rate: 10000, Size: 1000}
}

func (s stream) args() []string {
	args := []string{"send", "--interface", s.Interface, "--group", s.Group, "--port", strconv.Itoa(s.Port),
		"--count", strconv.FormatUint(s.Count, 10), "--rate", strconv.Itoa(s.Rate), "--size", strconv.Itoa(s.Size)}
	if s.TTL != 0 {
		args = append(args, "--ttl", strconv.Itoa(s.TTL))
	}
	if s.StreamID != 0 {
		args = append(args, "--stream-id", strconv.Itoa(s.StreamID))
	}
	if s.Hop != "" {
		args = append(args, "--hop-cpus", s.Hop)
	}
	if s.SourcePort != 0 {
		args = append(args, "--source-port", strconv.Itoa(s.SourcePort))
	}
	return args
}

// send runs `mcrgen send` in ns to completion, checks that it sent
// everything and returns its result.
func send(t testing.TB, ns *netnstest.NS, s stream) mcrgen.SendResult {
	t.Helper()
	return startSend(t, ns, s).wait()
}

// sender is an `mcrgen send` running in the background.
type sender struct {
	t    testing.TB
	s    stream
	what string
	proc *netnstest.Proc
}

// startSend starts `mcrgen send` in ns in the background.
func startSend(t testing.TB, ns *netnstest.NS, s stream) *sender {
	t.Helper()
	name, args := testbin.Path(t, "mcrgen"), s.args()
	if s.CPUs != "" {
		name, args = "taskset", append([]string{"-c", s.CPUs, name}, args...)
	}
	return &sender{t: t, s: s, what: fmt.Sprintf("mcrgen send to %s:%d on %s in %s", s.Group, s.Port, s.Interface, ns.Name),
		proc: netnstest.Start(t, ns, name, args...)}
}

// wait waits for the sender to end, checks that it sent everything and
// returns its result.
func (s *sender) wait() mcrgen.SendResult {
	s.t.Helper()
	if err := s.proc.Wait(recvTimeout); err != nil {
		s.t.Fatalf("%s: %v\n%s", s.what, err, s.proc.Output())
	}
	var res mcrgen.SendResult
	if err := decodeLine(s.proc.Output(), &res); err != nil {
		s.t.Fatalf("%s: %v", s.what, err)
	}
	if res.Sent != s.s.Count {
		s.t.Fatalf("%s sent %d datagrams, want %d", s.what, res.Sent, s.s.Count)
	}
	return res
}

// decodeLine decodes the first line of output that is a JSON object into v:
// mcrgen prints its result as one such line on stdout, and a summary that
// is not JSON on stderr.
func decodeLine(output string, v any) error {
	for line := range strings.Lines(output) {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), v); err != nil {
				return fmt.Errorf("decode %q: %w", line, err)
			}
			return nil
		}
	}
	return fmt.Errorf("no JSON result in the output:\n%s", output)
}

// receiver is an `mcrgen recv` running in a namespace.
type receiver struct {
	t    testing.TB
	what string
	proc *netnstest.Proc
}

// startRecv starts `mcrgen recv` for group and port on ifname in ns, ending
// after count datagrams or recvTimeout, and returns once it has joined the
// group and is queueing datagrams.
func startRecv(t testing.TB, ns *netnstest.NS, ifname, group string, port int, count uint64) *receiver {
	t.Helper()
	return startRecvUntil(t, ns, ifname, group, port, count, recvTimeout)
}

// startRecvUntil is startRecv with another overall deadline: for streams
// that are expected to lose datagrams, and so to end by the deadline.
func startRecvUntil(t testing.TB, ns *netnstest.NS, ifname, group string, port int, count uint64, timeout time.Duration) *receiver {
	t.Helper()
	r := &receiver{t: t, what: fmt.Sprintf("mcrgen recv %s:%d on %s in %s", group, port, ifname, ns.Name)}
	r.proc = netnstest.Start(t, ns, testbin.Path(t, "mcrgen"), "recv", "--interface", ifname, "--group", group,
		"--port", strconv.Itoa(port), "--count", strconv.FormatUint(count, 10), "--timeout", timeout.String())
	waitFor(t, 5*time.Second, r.what+" to listen", func() bool {
		select {
		case <-r.proc.Done():
			t.Fatalf("%s exited: %v\n%s", r.what, r.proc.Wait(0), r.proc.Output())
		default:
		}
		return strings.Contains(r.proc.Output(), "mcrgen recv: listening on")
	})
	return r
}

// result waits for the receiver to end and returns its JSON result.
func (r *receiver) result() mcrgen.RecvResult {
	r.t.Helper()
	if err := r.proc.Wait(recvTimeout + 5*time.Second); err != nil {
		r.t.Fatalf("%s: %v\n%s", r.what, err, r.proc.Output())
	}
	var res mcrgen.RecvResult
	if err := decodeLine(r.proc.Output(), &res); err != nil {
		r.t.Fatalf("%s: %v", r.what, err)
	}
	return res
}

// resultWhenSettled ends receiver r once rule id of d has relayed all it
// will (its counters settled) and returns r's result: for a stream that
// loses datagrams, whose receiver would otherwise wait for its deadline,
// and which a slow machine may deliver after any shorter one.
func (d *daemon) resultWhenSettled(r *receiver, id string) mcrgen.RecvResult {
	d.t.Helper()
	d.settledReport(id)
	select {
	case <-r.proc.Done():
	default:
		_ = r.proc.Signal(os.Interrupt) // mcrgen prints its result and exits 0
	}
	return r.result()
}

// delivery is the part of a receiver's result that scenarios check.
type delivery struct {
	Received, Lost, Duplicates, Reordered, Corrupt, Unverified, Bytes uint64
}

func deliveryOf(r mcrgen.RecvResult) delivery {
	return delivery{r.Received, r.Lost, r.Duplicates, r.Reordered, r.Corrupt, r.Unverified, r.Bytes}
}

// checkDelivered checks that a receiver got exactly n intact datagrams of
// size bytes each, in order, none lost or duplicated. Empty datagrams
// (size 0) carry nothing to verify: they must all arrive, unverified.
func checkDelivered(t testing.TB, what string, got mcrgen.RecvResult, n uint64, size int) {
	t.Helper()
	want := delivery{Received: n, Bytes: n * uint64(size)}
	if size == 0 {
		want.Unverified = n
	}
	if diff := cmp.Diff(want, deliveryOf(got)); diff != "" {
		t.Errorf("%s received (-want +got):\n%s", what, diff)
	}
}

// listenInProcess opens an mcrgen receiver inside ns from this process: for
// scenarios with many receivers, where a process each would cost more than
// the relay. It has joined when it returns; it is closed when the test ends.
func listenInProcess(t testing.TB, ns *netnstest.NS, cfg mcrgen.RecvConfig) *mcrgen.Receiver {
	t.Helper()
	var r *mcrgen.Receiver
	// A socket stays in the namespace it was created in.
	if err := ns.Do(func() (err error) {
		r, err = mcrgen.NewReceiver(cfg)
		return err
	}); err != nil {
		t.Fatalf("receiver %s:%d on %s in %s: %v", cfg.Group, cfg.Port, cfg.Interface, ns.Name, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// runAll runs receivers concurrently and returns their results in order.
func runAll(t testing.TB, rs []*mcrgen.Receiver) []mcrgen.RecvResult {
	t.Helper()
	res := make([]mcrgen.RecvResult, len(rs))
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { res[i], errs[i] = r.Run(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("receiver %d: %v", i, err)
		}
	}
	return res
}

// ---- topologies -----------------------------------------------------------

// Interfaces of the standard line src ── relay ── sink.
const (
	srcIf  = "src0"  // in src: 10.1.0.1/24, fd00:1::1/64
	inIf   = "in0"   // in relay, towards src: 10.1.0.2/24, fd00:1::2/64
	outIf  = "out0"  // in relay, towards sink: 10.2.0.1/24, fd00:2::1/64
	sinkIf = "sink0" // in sink: 10.2.0.2/24, fd00:2::2/64
)

// line is the standard topology: a sender's namespace, the relay's and a
// receiver's, joined by two veth pairs.
type line struct {
	src, relay, sink *netnstest.NS
}

func newLine(t *testing.T) *line {
	t.Helper()
	l := &line{src: netnstest.New(t, "src"), relay: netnstest.New(t, "rly"), sink: netnstest.New(t, "snk")}
	link(t, l.src, srcIf, l.relay, inIf, 1)
	link(t, l.relay, outIf, l.sink, sinkIf, 2)
	return l
}

// link joins aIf in a and bIf in b with a veth pair on subnet n:
// 10.n.0.0/24 and fd00:n::/64, a's end .1 and ::1, b's .2 and ::2.
func link(t *testing.T, a *netnstest.NS, aIf string, b *netnstest.NS, bIf string, n int) {
	t.Helper()
	netnstest.Veth(t, a, aIf, []string{fmt.Sprintf("10.%d.0.1/24", n), fmt.Sprintf("fd00:%d::1/64", n)},
		b, bIf, []string{fmt.Sprintf("10.%d.0.2/24", n), fmt.Sprintf("fd00:%d::2/64", n)})
}

// setMTU sets the MTU of the line's four veth ends.
func (l *line) setMTU(mtu int) {
	for _, e := range []struct {
		ns *netnstest.NS
		on string
	}{{l.src, srcIf}, {l.relay, inIf}, {l.relay, outIf}, {l.sink, sinkIf}} {
		e.ns.MustRun("ip", "link", "set", "dev", e.on, "mtu", strconv.Itoa(mtu))
	}
}

// ---- kernel state ---------------------------------------------------------

// joinedGroups returns the multicast groups the kernel has joined on
// ifname in ns, IPv4 (/proc/net/igmp) and IPv6 (/proc/net/igmp6).
func joinedGroups(t testing.TB, ns *netnstest.NS, ifname string) map[netip.Addr]bool {
	t.Helper()
	var igmp, igmp6 []byte
	// /proc/thread-self/net is the namespace of the thread Do switched.
	if err := ns.Do(func() (err error) {
		if igmp, err = os.ReadFile("/proc/thread-self/net/igmp"); err != nil {
			return err
		}
		igmp6, err = os.ReadFile("/proc/thread-self/net/igmp6")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	groups, err := parseIGMP(string(igmp), ifname)
	if err != nil {
		t.Fatal(err)
	}
	groups6, err := parseIGMP6(string(igmp6), ifname)
	if err != nil {
		t.Fatal(err)
	}
	for g := range groups6 {
		groups[g] = true
	}
	return groups
}

// parseIGMP parses /proc/net/igmp: a device line ("2\tin0 : 3 V3") followed
// by one tab-indented line per group whose first field is the address as
// the host-order hex of its network-order 32 bits ("010101EF" is 239.1.1.1
// on little-endian machines, which are all this suite runs on).
func parseIGMP(text, ifname string) (map[netip.Addr]bool, error) {
	groups := map[netip.Addr]bool{}
	var dev string
	for i, line := range strings.Split(text, "\n") {
		if i == 0 || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "\t") {
			dev = f[1]
			continue
		}
		if dev != ifname {
			continue
		}
		b, err := hex.DecodeString(f[0])
		if err != nil || len(b) != 4 {
			return nil, fmt.Errorf("/proc/net/igmp line %q: bad group", line)
		}
		groups[netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})] = true
	}
	return groups, nil
}

// parseIGMP6 parses /proc/net/igmp6: "idx dev addr-hex users flags timer".
func parseIGMP6(text, ifname string) (map[netip.Addr]bool, error) {
	groups := map[netip.Addr]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != ifname {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 16 {
			return nil, fmt.Errorf("/proc/net/igmp6 line %q: bad group", line)
		}
		groups[netip.AddrFrom16([16]byte(b))] = true
	}
	return groups, nil
}

// mustAddr parses an IP address written in the test.
func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
