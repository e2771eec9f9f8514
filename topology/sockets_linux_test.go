package topology

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcrelay/mcr/ruleset"
)

// fastRetry makes workers ask again for sockets that failed to open every
// 200 ms instead of every 5 s (hidden flag), and report as often, so that
// scenarios see many retries in a second or two.
var fastRetry = []string{"--stats-interval", "200ms", "--socket-retry", "200ms"}

// limitLeaving returns the RLIMIT_NOFILE under which process pid may
// open exactly free more fds: new fds take the lowest free numbers below
// the limit, and fds it holds above the limit stay open.
func limitLeaving(t *testing.T, pid, free int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			fds = append(fds, n)
		}
	}
	slices.Sort(fds)
	limit := free
	for _, fd := range fds {
		if fd < limit {
			limit++
		}
	}
	return limit
}

// fdCount returns the number of fds process pid holds.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestFailingOutputLeaksNoFD runs a rule whose output cannot open (its
// source address is not on the output interface): the workers ask for the
// socket again and again, and every attempt fails in the supervisor. Over
// many attempts neither the supervisor nor a worker holds one fd more.
func TestFailingOutputLeaksNoFD(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	config := filepath.Join(t.TempDir(), "mcr.json")
	writeConfig(t, config, rule("bad", inIf, "239.1.1.1", 5000,
		ruleset.Output{Interface: outIf, Group: "239.2.2.2", Port: 6000, Source: "10.99.0.1"}))
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2, Config: config,
		Flags: append([]string{"--log-level", "debug"}, fastRetry...)})
	const wantErr = "bind to source 10.99.0.1: cannot assign requested address"
	waitFor(t, 10*time.Second, "the output's error in the stats", func() bool {
		return strings.Contains(ruleReport(t, d.stats(), "bad").Error, wantErr)
	})
	workers := d.workerPIDs()
	failures := func() int { return strings.Count(d.proc.Output(), `msg="socket not sent"`) }
	supervisor := d.proc.Cmd.Process.Pid
	before := fdCount(t, supervisor)
	workersBefore := make([]int, len(workers))
	for i, pid := range workers {
		workersBefore[i] = fdCount(t, pid)
	}
	const attempts = 20
	n := failures()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d more failed socket opens", attempts), func() bool {
		return failures() >= n+attempts
	})
	// A control connection of the waits above may still be closing.
	waitFor(t, 5*time.Second, fmt.Sprintf("the supervisor to hold at most the %d fds it held %d attempts ago", before, attempts),
		func() bool { return fdCount(t, supervisor) <= before })
	for i, pid := range workers {
		waitFor(t, 5*time.Second, fmt.Sprintf("worker %d to hold at most the %d fds it held %d attempts ago", i, workersBefore[i], attempts),
			func() bool { return fdCount(t, pid) <= workersBefore[i] })
	}
}

// TestWorkerOutOfFDs leaves the worker few fds (prlimit --nofile on the
// running worker, as the worker's user, who may lower its limits; the
// supervisor, which holds every egress socket, keeps its own): a rule with 25 outputs, each from a source port of its
// own and so on a socket of its own, takes most of them, and the sockets
// of a second rule with 12 more cannot all be received. Those fail with
// "too many open files", counted in socket_errors, while the socket stream
// stays in frame: no resync, no restart, no garbled error. Once the first
// rule is removed, the next retry opens every output of the second, which
// relays on all of them.
func TestWorkerOutOfFDs(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"prlimit", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found (apt-get install util-linux)", tool)
		}
	}
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Flags: fastRetry})
	pid := d.workerPIDs()[0]
	// With its input socket and one egress socket open, the worker may
	// open 30 more fds.
	d.add(rule("input", inIf, "239.1.1.3", 5000, out("239.2.2.3", 6000, outIf)))
	d.waitReady()
	limit := strconv.Itoa(limitLeaving(t, pid, 30))
	if out, err := exec.Command("setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
		"prlimit", "--pid", strconv.Itoa(pid), "--nofile="+limit+":"+limit).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v: %s", err, out)
	}
	outputs := func(port, n int) ([]ruleset.Output, []string) {
		var outs []ruleset.Output
		var dests []string
		for i := range n {
			o := out("239.2.2.2", port+i, outIf)
			o.SourcePort = port + 10000 + i
			outs = append(outs, o)
			dests = append(dests, dest("239.2.2.2", port+i, outIf))
		}
		return outs, dests
	}
	hogOuts, _ := outputs(7000, 25)
	d.add(rule("hog", inIf, "239.1.1.2", 5000, hogOuts...))
	waitFor(t, 10*time.Second, "every output of the first rule open", func() bool {
		return ruleReport(t, d.stats(), "hog").Error == ""
	})
	outs, dests := outputs(6000, 12)
	d.add(rule("many", inIf, "239.1.1.1", 5000, outs...))
	waitFor(t, 10*time.Second, "sockets lost for want of fds, counted", func() bool {
		rep := d.stats()
		return strings.Contains(ruleReport(t, rep, "many").Error, "too many open files") &&
			rep.Workers[0].SocketErrors > 0
	})
	rep := d.stats()
	if e := ruleReport(t, rep, "many").Error; strings.Contains(e, "socket reply of") || strings.Contains(e, "decode socket reply") {
		t.Errorf("rule error shows a garbled socket stream: %s", e)
	}
	if w := rep.Workers[0]; w.SocketResyncs != 0 {
		t.Errorf("socket_resyncs %d out of fds, want 0: the stream kept its framing", w.SocketResyncs)
	}

	if _, err := d.ctl("remove", "--rule-id", "hog"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every output open once fds are free", func() bool {
		return ruleReport(t, d.stats(), "many").Error == ""
	})
	d.waitReady()
	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count = 500
	recv := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6011, s.Count)
	send(t, l.src, s)
	checkDelivered(t, "receiver of the last output", recv.result(), s.Count, s.Size)
	d.checkCounted("many", s.Count, s.Size, dests...)
	ws := d.workerList()
	if ws[0].PID != pid || ws[0].Restarts != 0 || !ws[0].InSync || ws[0].State != "running" {
		t.Errorf("worker after the fd shortage: %+v; want pid %d running, in sync, not restarted", ws[0], pid)
	}
}
