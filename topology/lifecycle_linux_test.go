package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// TestTwoWorkers runs two workers in cpu fanout mode and two streams whose
// senders are pinned to different cores, so that the packets spread over
// both workers: each datagram is relayed exactly once, and what the
// workers matched adds up to what the rules counted. (In the default hash
// mode two flows may well share a worker.)
func TestTwoWorkers(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2, Flags: []string{"--fanout", "cpu"}})
	d.add(rule("a", inIf, "239.1.1.1", 5000, out("239.2.2.1", 6000, outIf)))
	d.add(rule("b", inIf, "239.1.1.2", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	sa, sb := newStream(srcIf, "239.1.1.1", 5000), newStream(srcIf, "239.1.1.2", 5000)
	sa.Count, sa.Rate, sa.CPUs = 4000, 5000, "0"
	sb.Count, sb.Rate, sb.CPUs = 4000, 5000, "1"
	ra := startRecv(t, l.sink, sinkIf, "239.2.2.1", 6000, sa.Count)
	rb := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, sb.Count)
	senders := []*sender{startSend(t, l.src, sa), startSend(t, l.src, sb)}
	for _, s := range senders {
		s.wait()
	}

	checkDelivered(t, "receiver of stream a", ra.result(), sa.Count, sa.Size)
	checkDelivered(t, "receiver of stream b", rb.result(), sb.Count, sb.Size)
	d.checkCounted("a", sa.Count, sa.Size, dest("239.2.2.1", 6000, outIf))
	d.checkCounted("b", sb.Count, sb.Size, dest("239.2.2.2", 6000, outIf))

	rep := d.stats()
	if len(rep.Workers) != 2 {
		t.Fatalf("stats list %d workers, want 2: %+v", len(rep.Workers), rep.Workers)
	}
	var total uint64
	for _, w := range rep.Workers {
		m := matched(w.WorkerCounters)
		t.Logf("worker %d on core %d matched %d of %d received", w.Worker, w.Core, m, w.RxPackets)
		if m == 0 {
			t.Errorf("worker %d matched no packet: the fanout did not spread the streams", w.Worker)
		}
		total += m
	}
	if want := sa.Count + sb.Count; total != want || rep.Totals.PacketsIn != want {
		t.Errorf("workers matched %d packets and totals.packets_in is %d, want both %d", total, rep.Totals.PacketsIn, want)
	}
}

// matched is how many of a worker's received packets matched a rule: every
// packet it reads is either matched or counted under one drop reason.
func matched(c stats.WorkerCounters) uint64 {
	return c.RxPackets - c.NoMatch - c.Malformed - c.Fragments - c.NotUDP - c.VLANTagged - c.BadChecksum
}

// TestDynamicRulesUnderTraffic adds, removes and re-adds other rules on the
// stream's interface (one on the stream's own group) as fast as mcrctl
// allows while the stream runs: the stream loses nothing.
func TestDynamicRulesUnderTraffic(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	d.add(rule("stream", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Rate = 10000, 5000
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	snd := startSend(t, l.src, s)
	others := []string{
		// Same group, other port: the stream's membership is shared.
		"add --rule-id same-group --input-interface in0 --input-group 239.1.1.1 --input-port 5001 --outputs 239.2.2.2:6001:out0",
		"add --rule-id other --input-interface in0 --input-group 239.1.1.9 --input-port 5000 --outputs 239.2.2.9:6000:out0",
		"remove --rule-id same-group",
		"remove --rule-id other",
	}
	ops := 0
	for running := true; running; ops++ {
		select {
		case <-snd.proc.Done():
			running = false
		default:
		}
		if _, err := d.ctl(strings.Fields(others[ops%len(others)])...); err != nil {
			t.Fatal(err)
		}
	}
	snd.wait()

	t.Logf("%d rule changes during the stream", ops)
	if ops < 2*len(others) {
		t.Errorf("only %d rule changes during the stream, want at least %d: nothing was re-added", ops, 2*len(others))
	}
	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted("stream", s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
	d.waitReady()
}

// TestReloadOnSIGHUP swaps another rule in and out of the --config file and
// reloads it with SIGHUP, again and again while the stream runs: the
// stream's rule, in every version of the file, loses nothing.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	path := filepath.Join(t.TempDir(), "mcr.json")
	streamRule := rule("stream", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf))
	versions := [][]string{{"old", "239.1.1.3"}, {"new", "239.1.1.4"}}
	writeVersion := func(i int) []string {
		v := versions[i%len(versions)]
		writeConfig(t, path, streamRule, rule(v[0], inIf, v[1], 5000, out("239.2.2.3", 6000, outIf)))
		return []string{v[0], "stream"}
	}
	want := writeVersion(0)
	d := startDaemon(t, l.relay, daemonOptions{Config: path})
	if diff := cmp.Diff(want, ruleIDs(d.rules())); diff != "" {
		t.Fatalf("rules loaded from --config (-want +got):\n%s", diff)
	}

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Rate = 10000, 5000
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	snd := startSend(t, l.src, s)
	reloads := 0
	for running := true; running; {
		select {
		case <-snd.proc.Done():
			running = false
		default:
		}
		reloads++
		want := writeVersion(reloads)
		if err := d.proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("reload %d to apply rules %v", reloads, want), func() bool {
			return slices.Equal(ruleIDs(d.rules()), want) && d.synced()
		})
	}
	snd.wait()

	t.Logf("%d reloads during the stream", reloads)
	if reloads < 2 {
		t.Errorf("only %d reloads during the stream, want at least 2", reloads)
	}
	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted("stream", s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
}

// ruleIDs returns the sorted ids of rules.
func ruleIDs(rules []controlproto.RuleStatus) []string {
	ids := make([]string, len(rules))
	for i, r := range rules {
		ids[i] = r.ID
	}
	slices.Sort(ids)
	return ids
}

// TestWorkerKilled kills the only worker with SIGKILL in the middle of a
// stream. The supervisor restarts it at once and the next worker takes
// over the slot's socket: the loss is bounded (what the ring could not
// hold while no worker read it), the rest of the stream arrives, the
// restart is counted, the rule's counters keep what the dead worker had
// reported, and a second stream loses nothing.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	d.add(rule("stream", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Rate = 15000, 5000 // 3 s
	// The stream loses datagrams, so the receiver ends by its deadline.
	r := startRecvUntil(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count, 3*time.Second+2*time.Second)
	snd := startSend(t, l.src, s)
	before := d.waitCounted("stream", 2000).PacketsIn
	victim := d.workerList()[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %d: %v", victim.PID, err)
	}
	waitFor(t, 5*time.Second, "the killed worker to be restarted and in sync", func() bool {
		w := d.workerList()[0]
		return w.Restarts == 1 && w.PID != victim.PID && d.synced()
	})
	snd.wait()

	got := r.result()
	t.Logf("killing the worker lost %d of %d datagrams", got.Lost, s.Count)
	if got.Received+got.Lost != s.Count || got.Duplicates != 0 || got.Corrupt != 0 {
		t.Errorf("stream across the restart: %+v; want received+lost = %d (first and last arrived), no duplicates or corruption",
			deliveryOf(got), s.Count)
	}
	if bound := uint64(s.Rate); got.Lost > bound {
		t.Errorf("killing the worker lost %d datagrams, more than one second of the stream (%d)", got.Lost, bound)
	}

	// The supervisor's totals keep the dead worker's reported counts, and
	// the restarted worker counts a new stream exactly (once it reported
	// the rest of the first, which waited for it in the slot's socket).
	base := d.settledReport("stream")
	if base.PacketsIn < before {
		t.Errorf("rule counter went back from %d to %d across the restart", before, base.PacketsIn)
	}
	s2 := newStream(srcIf, "239.1.1.1", 5000)
	r2 := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s2.Count)
	send(t, l.src, s2)
	checkDelivered(t, "sink after the restart", r2.result(), s2.Count, s2.Size)
	d.checkCountedSince(base, "stream", s2.Count, s2.Size, dest("239.2.2.2", 6000, outIf))
	if w := d.workerList()[0]; w.Restarts != 1 {
		t.Errorf("worker restarts = %d after one kill, want 1", w.Restarts)
	}
}

// TestSIGTERMDuringTraffic stops the daemon with SIGTERM while a stream
// runs through both of its workers: it exits 0, removes its socket, leaves
// no worker process behind and leaves the group.
func TestSIGTERMDuringTraffic(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2})
	d.add(rule("stream", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()
	if !joinedGroups(t, l.relay, inIf)[mustAddr(t, "239.1.1.1")] {
		t.Fatal("mcrd has not joined 239.1.1.1 on in0")
	}
	workers := d.workerList()

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Rate = 20000, 5000
	startSend(t, l.src, s)
	d.waitCounted("stream", 1000)
	if err := d.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.proc.Wait(5 * time.Second); err != nil {
		t.Fatalf("mcrd after SIGTERM: %v, want exit status 0", err)
	}

	if _, err := os.Stat(d.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after exit: stat: %v, want it removed", err)
	}
	for _, w := range workers {
		if alive(w.PID) {
			t.Errorf("worker %d (pid %d) still runs after the supervisor exited", w.Worker, w.PID)
		}
	}
	if joinedGroups(t, l.relay, inIf)[mustAddr(t, "239.1.1.1")] {
		t.Error("239.1.1.1 is still joined on in0 after mcrd exited")
	}
}

// alive reports whether process pid exists and has not exited (a zombie
// has exited).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
