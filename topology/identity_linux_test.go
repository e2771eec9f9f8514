package topology

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/ruleset"
)

// TestStreamIdentity relays one input through two workers to two outputs,
// one with a source port of its own: each receiver sees every datagram
// from exactly one source address and port, the fixed port where one is
// set, and the same source after every worker is killed with SIGKILL,
// after a config reload (SIGHUP) that keeps the outputs, and after the rule
// is removed and added again.
func TestStreamIdentity(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	path := filepath.Join(t.TempDir(), "mcr.json")
	fixed := out("239.2.2.3", 6001, outIf)
	fixed.SourcePort = 5001
	r := rule("identity", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf), fixed)
	writeConfig(t, path, r)
	// cpu fanout mode: two senders on different cores reach different
	// workers, which must send from one source nonetheless (in the
	// default hash mode the two flows may share a worker).
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2, Config: path, Flags: []string{"--fanout", "cpu"}})

	var sources [2]string // of each output, from the first round
	round := func(what string) {
		t.Helper()
		// Two senders on different cores: the cpu fanout mode hands
		// their packets to different workers.
		const perSender = 1000
		ra := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, 2*perSender)
		rb := startRecv(t, l.sink, sinkIf, "239.2.2.3", 6001, 2*perSender)
		var senders []*sender
		for _, cpu := range []string{"0", "1"} {
			s := newStream(srcIf, "239.1.1.1", 5000)
			s.Count, s.Rate, s.CPUs = perSender, 5000, cpu
			senders = append(senders, startSend(t, l.src, s))
		}
		for _, s := range senders {
			s.wait()
		}
		for i, rc := range []*receiver{ra, rb} {
			got := rc.result()
			checkDelivered(t, fmt.Sprintf("%s: output %d", what, i), got, 2*perSender, 1000)
			if len(got.Sources) != 1 {
				t.Errorf("%s: output %d received from %d sources, want 1: %v", what, i, len(got.Sources), got.Sources)
				continue
			}
			src := slices.Collect(maps.Keys(got.Sources))[0]
			if sources[i] == "" {
				sources[i] = src
				t.Logf("output %d sends from %s", i, src)
			} else if src != sources[i] {
				t.Errorf("%s: output %d sends from %s, before from %s", what, i, src, sources[i])
			}
		}
	}

	round("first stream")
	if want := "10.2.0.1:5001"; sources[1] != want {
		t.Errorf("the output with source_port 5001 sends from %s, want %s", sources[1], want)
	}
	d.waitCounted("identity", 2000)
	for _, w := range d.stats().Workers {
		if m := matched(w.WorkerCounters); m == 0 {
			t.Errorf("worker %d relayed nothing: one worker alone always has one source", w.Worker)
		}
	}

	d.killWorkers()
	round("after SIGKILL of every worker")

	r.Name = "renamed by a reload"
	writeConfig(t, path, r, rule("other", inIf, "239.1.1.9", 5000, out("239.2.2.9", 6000, outIf)))
	if err := d.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload to apply", func() bool { return len(d.rules()) == 2 && d.synced() })
	round("after a reload that kept the outputs")

	if _, err := d.ctl("remove", "--rule-id", "identity"); err != nil {
		t.Fatal(err)
	}
	d.add(r)
	d.waitReady()
	round("after the rule was removed and added again")
}

// TestEgressSocketsScaleWithIdentities loads 20,000 outputs on 2 workers:
// the supervisor and each worker hold a handful of egress sockets, not one
// per output (and ephemeral port), and a stream still reaches an output.
func TestEgressSocketsScaleWithIdentities(t *testing.T) {
	t.Parallel()
	const rules, perRule = 20, 1000
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2})
	sockets := func() map[string]int {
		n := map[string]int{"supervisor": countSockets(t, d.proc.Cmd.Process.Pid)}
		for _, w := range d.workerList() {
			n[fmt.Sprintf("worker %d", w.Worker)] = countSockets(t, w.PID)
		}
		return n
	}
	udp := func() int {
		return strings.Count(l.relay.MustRun("ss", "-uanH"), "\n")
	}
	base, baseUDP := sockets(), udp()

	var rs []ruleset.Rule
	for i := range rules {
		r := rule(fmt.Sprintf("wide%02d", i), inIf, fmt.Sprintf("239.1.9.%d", i), 5000)
		for j := range perRule {
			r.Outputs = append(r.Outputs, out(fmt.Sprintf("239.3.%d.%d", i*4+j/256, j%256), 7000, outIf))
		}
		rs = append(rs, r)
	}
	path := filepath.Join(t.TempDir(), "wide.json")
	writeConfig(t, path, rs...)
	start := time.Now()
	if _, err := d.ctl("config", "load", path); err != nil {
		t.Fatal(err)
	}
	d.waitReady()
	t.Logf("%d outputs loaded and in sync on 2 workers in %v", rules*perRule, time.Since(start).Round(time.Millisecond))

	after, afterUDP := sockets(), udp()
	for who, n := range after {
		t.Logf("%s: %d sockets before the rules, %d after", who, base[who], n)
		// One egress socket (the outputs' identity), an input socket per
		// worker, and for the supervisor its membership helpers and the
		// listener table of the one output interface (a packet socket,
		// two raw sockets and a netlink socket).
		limit := 4
		if who == "supervisor" {
			limit += 4
		}
		if grew := n - base[who]; grew > limit {
			t.Errorf("%s holds %d more sockets for %d outputs, want a handful", who, grew, rules*perRule)
		}
	}
	t.Logf("UDP sockets in the relay's namespace: %d before the rules, %d after", baseUDP, afterUDP)
	if grew := afterUDP - baseUDP; grew > 4 {
		t.Errorf("%d more UDP sockets in the relay's namespace for %d outputs, want a handful", grew, rules*perRule)
	}

	s := newStream(srcIf, "239.1.9.7", 5000)
	// Each datagram leaves 1,000 times: a few suffice; one core: one worker, in order.
	s.Count, s.Rate, s.CPUs = 20, 1000, "0"
	rc := startRecv(t, l.sink, sinkIf, "239.3.30.232", 7000, s.Count) // wide07's output 744
	send(t, l.src, s)
	checkDelivered(t, "an output among 20,000", rc.result(), s.Count, s.Size)
}

// countSockets counts the sockets among the open fds of process pid.
func countSockets(t testing.TB, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(link, "socket:") {
			n++
		}
	}
	return n
}

// iperfFinal matches the final report of an iperf2 UDP server: the whole
// run's interval, from 0, and its lost and total datagrams.
var iperfFinal = regexp.MustCompile(`\] 0\.0+-(\d+\.\d+) sec .* (\d+)/\s*(\d+) \(`)

// TestIperfMulticastThroughTwoWorkers puts an iperf2 multicast receiver
// behind a relay with two workers and sends to it with an iperf2 client
// pinned to one core: the receiver follows one sender, so it prints its
// final report only when the whole stream reaches it from one source, and
// the report counts no loss and nothing out of order.
func TestIperfMulticastThroughTwoWorkers(t *testing.T) {
	t.Parallel()
	iperf, err := exec.LookPath("iperf")
	if err != nil {
		t.Skip("iperf (iperf2) is not installed: apt-get install iperf")
	}
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2})
	d.add(rule("iperf", inIf, "239.1.1.1", 5001, out("239.2.2.2", 5001, outIf)))
	d.waitReady()
	l.src.MustRun("ip", "route", "add", "224.0.0.0/4", "dev", srcIf)
	l.sink.MustRun("ip", "route", "add", "224.0.0.0/4", "dev", sinkIf)

	const seconds = 3
	srv := netnstest.Start(t, l.sink, iperf, "-s", "-u", "-B", "239.2.2.2%"+sinkIf, "-p", "5001", "-i", "1")
	waitFor(t, 5*time.Second, "the iperf server to join", func() bool {
		return strings.Contains(srv.Output(), "Joining multicast")
	})
	cli := netnstest.Start(t, l.src, "taskset", "-c", "0", iperf, "-c", "239.1.1.1", "-u", "-p", "5001",
		"-T", "8", "-b", "2M", "-l", "1000", "-t", strconv.Itoa(seconds))
	if err := cli.Wait(seconds*time.Second + 10*time.Second); err != nil {
		t.Fatalf("iperf client: %v\n%s", err, cli.Output())
	}
	var final []string
	waitFor(t, 5*time.Second, "the iperf server's final report", func() bool {
		for _, m := range iperfFinal.FindAllStringSubmatch(srv.Output(), -1) {
			if end, _ := strconv.ParseFloat(m[1], 64); end >= seconds-0.5 {
				final = m
				return true
			}
		}
		return false
	})
	t.Logf("iperf server:\n%s", srv.Output())
	if final[2] != "0" || final[3] == "0" {
		t.Errorf("final report: %s of %s datagrams lost, want 0 of some", final[2], final[3])
	}
	if strings.Contains(srv.Output(), "out-of-order") {
		t.Errorf("the iperf server saw datagrams out of order")
	}
}

// TestSourcePortInUse gives an output a source port another program holds
// on the output interface: the rule is accepted, ListRules and the stats
// show the output's error, and once the port is free the output sends
// from it, the error gone.
func TestSourcePortInUse(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	var squatter int
	if err := l.relay.Do(func() (err error) {
		if squatter, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return syscall.Bind(squatter, &syscall.SockaddrInet4{Port: 5001})
	}); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			syscall.Close(squatter)
		}
	})
	d := startDaemon(t, l.relay, daemonOptions{})
	o := out("239.2.2.2", 6000, outIf)
	o.SourcePort = 5001
	d.add(rule("held", inIf, "239.1.1.1", 5000, o))
	d.waitReady()
	want := "outputs[0] 239.2.2.2:6000@out0: bind to source port 5001: address already in use"
	if got := d.rules()[0].Error; got != want {
		t.Errorf("ListRules error %q, want %q", got, want)
	}
	waitFor(t, 5*time.Second, "the output's error in the stats", func() bool {
		return ruleReport(t, d.stats(), "held").Error == want
	})

	syscall.Close(squatter)
	closed = true
	// The workers ask for failed sockets again every 5 s.
	waitFor(t, 15*time.Second, "the error to clear once the port is free", func() bool {
		return d.rules()[0].Error == "" && ruleReport(t, d.stats(), "held").Error == ""
	})
	s := newStream(srcIf, "239.1.1.1", 5000)
	s.CPUs = "0"
	rc := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, l.src, s)
	got := rc.result()
	checkDelivered(t, "the receiver", got, s.Count, s.Size)
	if want := map[string]uint64{"10.2.0.1:5001": s.Count}; !maps.Equal(got.Sources, want) {
		t.Errorf("sources %v, want %v", got.Sources, want)
	}
}
