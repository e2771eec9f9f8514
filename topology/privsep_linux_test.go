package topology

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWorkersUnprivileged runs the daemon as root with its default
// --worker-user (nobody) and checks, while it forwards, that every worker
// runs without privileges and cannot open a raw socket of its own, and
// that the sockets it needs still reach it from the supervisor when rules
// are added and removed, when a worker is restarted and when the input
// interface is recreated under a new ifindex.
func TestWorkersUnprivileged(t *testing.T) {
	// Each worker tries socket(AF_PACKET) right after its privilege check
	// and logs the outcome (worker/privs_linux.go). Not parallel: the
	// variable must reach only this test's daemon.
	t.Setenv("MCR_TEST_PRIVILEGE_PROBE", "1")
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2})
	first := d.add(rule("first", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()
	d.checkStream(l, first, "239.1.1.1", 5000, "239.2.2.2", 6000)
	d.checkWorkersUnprivileged()
	d.checkProbes(2)

	// A rule added at run time gets its sockets passed; a removed one
	// stops forwarding.
	second := d.add(rule("second", inIf, "239.1.1.3", 5002, out("239.2.2.4", 6002, outIf)))
	d.waitReady()
	d.checkStream(l, second, "239.1.1.3", 5002, "239.2.2.4", 6002)
	if _, err := d.ctl("remove", "--rule-id", first); err != nil {
		t.Fatalf("remove %s: %v", first, err)
	}
	d.waitReady()
	d.checkStream(l, second, "239.1.1.3", 5002, "239.2.2.4", 6002)

	// A restarted worker is unprivileged again and gets its sockets.
	victim := d.workerList()[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %d: %v", victim.PID, err)
	}
	waitFor(t, 5*time.Second, "the killed worker to be restarted and in sync", func() bool {
		return d.workerList()[0].PID != victim.PID && d.synced()
	})
	d.waitReady()
	d.checkStream(l, second, "239.1.1.3", 5002, "239.2.2.4", 6002)
	d.checkWorkersUnprivileged()
	d.checkProbes(3)

	// A recreated input interface gets new ingress sockets.
	oldIndex := l.relay.IfIndex(inIf)
	l.relay.MustRun("ip", "link", "del", inIf) // takes src0 along
	link(t, l.src, srcIf, l.relay, inIf, 1)
	if ix := l.relay.IfIndex(inIf); ix == oldIndex {
		t.Fatalf("recreated %s kept ifindex %d: the scenario needs a new one", inIf, ix)
	}
	d.waitReady()
	// Only delivery: the rule went pending while in0 was gone, which
	// restarts its counters at a moment no base taken here can be sure
	// to follow.
	d.checkDelivery(l, "239.1.1.3", 5002, "239.2.2.4", 6002)
	d.checkWorkersUnprivileged()
}

// checkStream sends a stream to group:port on the line's input and checks
// that the sink got all of it on outGroup:outPort and rule id counted it.
func (d *daemon) checkStream(l *line, id, group string, port int, outGroup string, outPort int) {
	d.t.Helper()
	base := ruleReport(d.t, d.stats(), id)
	s := d.checkDelivery(l, group, port, outGroup, outPort)
	d.checkCountedSince(base, id, s.Count, s.Size, dest(outGroup, outPort, outIf))
}

// checkDelivery sends a stream to group:port on the line's input, checks
// that the sink got all of it on outGroup:outPort, and returns the stream.
func (d *daemon) checkDelivery(l *line, group string, port int, outGroup string, outPort int) stream {
	d.t.Helper()
	s := newStream(srcIf, group, port)
	// One core receives the whole stream, so one worker relays it and
	// keeps its order in either fanout mode.
	s.CPUs = "0"
	r := startRecv(d.t, l.sink, sinkIf, outGroup, outPort, s.Count)
	send(d.t, l.src, s)
	checkDelivered(d.t, fmt.Sprintf("sink of %s:%d", outGroup, outPort), r.result(), s.Count, s.Size)
	return s
}

// checkWorkersUnprivileged checks every worker's /proc/PID/status: uid
// and gid not root, no capability in any set, no_new_privs.
func (d *daemon) checkWorkersUnprivileged() {
	d.t.Helper()
	for _, w := range d.workerList() {
		st := procStatus(d.t, w.PID)
		for _, field := range []string{"Uid", "Gid"} {
			for _, id := range strings.Fields(st[field]) {
				if id == "0" {
					d.t.Errorf("worker %d (pid %d): %s %q, want no root id", w.Worker, w.PID, field, st[field])
					break
				}
			}
		}
		for _, field := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if st[field] != "0000000000000000" {
				d.t.Errorf("worker %d (pid %d): %s %s, want 0", w.Worker, w.PID, field, st[field])
			}
		}
		if st["NoNewPrivs"] != "1" {
			d.t.Errorf("worker %d (pid %d): NoNewPrivs %q, want 1", w.Worker, w.PID, st["NoNewPrivs"])
		}
	}
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read worker status: %v", err)
	}
	defer f.Close()
	st := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st
}

// checkProbes waits for n workers' privilege probe records in the daemon's
// log and checks that each says socket(AF_PACKET) failed with EPERM.
func (d *daemon) checkProbes(n int) {
	d.t.Helper()
	var probes []string
	waitFor(d.t, 5*time.Second, fmt.Sprintf("%d privilege probe records", n), func() bool {
		probes = probes[:0]
		for line := range strings.Lines(d.proc.Output()) {
			if strings.Contains(line, `msg="privilege probe"`) {
				probes = append(probes, line)
			}
		}
		return len(probes) >= n
	})
	for _, p := range probes {
		if !strings.Contains(p, `af_packet="operation not permitted"`) {
			d.t.Errorf("worker opened or failed differently to open an AF_PACKET socket: %s", p)
		}
	}
}
