package topology

import (
	"maps"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// TestHoppingSenderInOrder runs two workers in the default fanout mode and
// a sender that moves between cores 0 and 1 every 50 datagrams, so that
// the stream reaches the relay on both (veth hands a datagram over on the
// core that sent it): the stream leaves in order, each datagram once, from
// one source address and port. Then
// every worker is killed with SIGKILL in the middle of a second stream:
// the next workers take over their slots' sockets, and the stream goes on
// in order, without duplicates, from the same source, each datagram lost
// counted: in kernel_drops, or in restart_unconfirmed when a worker died
// with it handed to a send call (which may have sent it or not).
func TestHoppingSenderInOrder(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs for the sender to hop between")
	}
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2})
	d.add(rule("hop", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Rate, s.Hop, s.StreamID = 5000, 5000, "0,1", 1
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, l.src, s)
	first := r.result()
	checkDelivered(t, "sink of the hopping stream", first, s.Count, s.Size)
	if len(first.Sources) != 1 {
		t.Errorf("the hopping stream arrived from %d sources, want 1: %v", len(first.Sources), first.Sources)
	}
	base := ruleReport(t, d.stats(), "hop")
	dropsBefore, unsureBefore := lossCounters(d.stats())

	s2 := s
	s2.Count, s2.StreamID = 15000, 2 // 3 s
	r2 := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s2.Count)
	snd := startSend(t, l.src, s2)
	d.waitCountedSince(base, "hop", 3000)
	d.killWorkers()
	snd.wait()
	got := d.resultWhenSettled(r2, "hop")
	if got.Reordered != 0 || got.Duplicates != 0 || got.Corrupt != 0 || got.Received+got.Lost != s2.Count {
		t.Errorf("stream across the kill: %+v; want nothing reordered, duplicated or corrupt, received+lost = %d (first and last arrived)",
			deliveryOf(got), s2.Count)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got.Sources)), slices.Sorted(maps.Keys(first.Sources))) {
		t.Errorf("across the kill the stream arrived from %v, before from %v: want the one source it had", got.Sources, first.Sources)
	}
	// What the rings could not hold while no worker read them is counted:
	// by the supervisor when the workers died, by the next ones after.
	// What a worker had handed to a send call when it died is counted by
	// the next one as unconfirmed: lost if the call was not made.
	var drops, unsure uint64
	waitFor(t, 5*time.Second, "kernel_drops and restart_unconfirmed to count the datagrams lost across the kill", func() bool {
		drops, unsure = lossCounters(d.stats())
		drops, unsure = drops-dropsBefore, unsure-unsureBefore
		return drops+unsure >= got.Lost
	})
	t.Logf("across the kill of both workers: received %d, lost %d of %d, kernel_drops +%d, restart_unconfirmed +%d",
		got.Received, got.Lost, s2.Count, drops, unsure)
	if drops > got.Lost || got.Lost > drops+unsure {
		t.Errorf("lost %d datagrams across the kill, kernel_drops +%d, restart_unconfirmed +%d: want every loss counted, once",
			got.Lost, drops, unsure)
	}
}

// lossCounters returns the relay's kernel_drops and restart_unconfirmed:
// the datagrams it lost for sure, and those a dead worker may have lost.
func lossCounters(rep stats.Report) (drops, unconfirmed uint64) {
	for _, w := range rep.Workers {
		unconfirmed += w.RestartUnconfirmed
	}
	return rep.Totals.KernelDrops, unconfirmed
}

// TestCPUFanoutFollowsCores runs two workers in cpu fanout mode pinned to
// cores 1 and 0 (--cpus 1,0: slot order is not core order, which the
// kernel's own PACKET_FANOUT_CPU would map wrongly) and a stream from each
// core (veth hands a datagram over on the core that sent it): the worker
// pinned to a core relays exactly that core's stream, also after it was
// killed and restarted.
func TestCPUFanoutFollowsCores(t *testing.T) {
	t.Parallel()
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2, Flags: []string{"--fanout", "cpu", "--cpus", "1,0"}})
	d.add(rule("a", inIf, "239.1.1.1", 5000, out("239.2.2.1", 6000, outIf)))
	d.add(rule("b", inIf, "239.1.1.2", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	// A round sends 2,000 datagrams of each stream, a's from core 0 and
	// b's from core 1.
	sa, sb := newStream(srcIf, "239.1.1.1", 5000), newStream(srcIf, "239.1.1.2", 5000)
	sa.Rate, sa.CPUs = 5000, "0"
	sb.Rate, sb.CPUs = 5000, "1"
	matchedByCore := func() map[int]uint64 {
		m := map[int]uint64{}
		for _, w := range d.stats().Workers {
			m[w.Core] = matched(w.WorkerCounters)
		}
		return m
	}
	round := func(what string) {
		t.Helper()
		before := matchedByCore()
		ra := startRecv(t, l.sink, sinkIf, "239.2.2.1", 6000, sa.Count)
		rb := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, sb.Count)
		for _, s := range []*sender{startSend(t, l.src, sa), startSend(t, l.src, sb)} {
			s.wait()
		}
		checkDelivered(t, what+": receiver of a", ra.result(), sa.Count, sa.Size)
		checkDelivered(t, what+": receiver of b", rb.result(), sb.Count, sb.Size)
		var got0, got1 uint64
		waitFor(t, 5*time.Second, what+": the worker of each core to match exactly that core's stream", func() bool {
			after := matchedByCore()
			got0, got1 = after[0]-before[0], after[1]-before[1]
			return got0 == sa.Count && got1 == sb.Count
		})
		t.Logf("%s: the workers of cores 0 and 1 matched %d and %d", what, got0, got1)
	}
	round("first round")

	var victim controlproto.WorkerInfo
	for _, w := range d.workerList() {
		if w.Core == 0 {
			victim = w
		}
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the worker of core 0 restarted and in sync", func() bool {
		i := slices.IndexFunc(d.workerList(), func(w controlproto.WorkerInfo) bool { return w.Core == 0 })
		return i >= 0 && d.workerList()[i].PID != victim.PID && d.synced()
	})
	round("after a restart")
}

// TestStoppedWorkerCounted stops the worker that relays a stream with
// SIGSTOP and keeps the stream going until the supervisor has found the
// worker hung, killed and restarted it: every datagram sent is either
// delivered, in order and once, or counted in kernel_drops (or, if the
// worker was stopped with datagrams handed to a send call, in
// restart_unconfirmed). What the socket queued for the slot meanwhile (its
// ring, or its receive buffer) is relayed by the next worker; what
// overflowed it was counted by the kernel, and read by the supervisor when
// the worker died or by the next worker. In each backend, with and without
// receive rings.
//
// The worker is stopped between two runs of the stream (the same flow:
// one source port), once it has relayed the first. Without a ring a worker
// takes a batch of datagrams out of its socket at a time, and a batch it
// holds when it is killed is lost uncounted; with a ring nothing leaves
// the ring before it is sent (docs/architecture.md, "Worker restarts").
func TestStoppedWorkerCounted(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name  string
		flags []string
	}{
		{"uring", []string{"--backend", "uring"}},
		{"mmsg", []string{"--backend", "mmsg"}},
		{"uring without rings", []string{"--backend", "uring", "--rx-ring-blocks", "0"}},
		{"mmsg without rings", []string{"--backend", "mmsg", "--rx-ring-blocks", "0"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testStoppedWorkerCounted(t, mode.flags)
		})
	}
}

func testStoppedWorkerCounted(t *testing.T, flags []string) {
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Workers: 2, Flags: flags})
	d.add(rule("stopped", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	first := newStream(srcIf, "239.1.1.1", 5000)
	first.Count, first.StreamID, first.SourcePort = 1000, 1, 41000
	// Longer than the hang detection: 3 stats intervals, then a health
	// check. More than the ring or the receive buffer holds.
	second := first
	second.Count, second.Rate, second.StreamID = 10000, 2000, 2
	total := first.Count + second.Count
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, total)
	send(t, l.src, first)
	d.waitCounted("stopped", first.Count)

	rep := d.stats()
	var victim controlproto.WorkerInfo
	for _, w := range d.workerList() {
		if i := slices.IndexFunc(rep.Workers, func(wr stats.WorkerReport) bool { return wr.Worker == w.Worker }); i >= 0 &&
			matched(rep.Workers[i].WorkerCounters) > 0 {
			victim = w
		}
	}
	if victim.PID == 0 {
		t.Fatalf("no worker relayed the first run: %+v", rep.Workers)
	}
	dropsBefore, unsureBefore := lossCounters(rep)
	if err := syscall.Kill(victim.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	snd := startSend(t, l.src, second)
	waitFor(t, 10*time.Second, "the stopped worker to be killed and restarted", func() bool {
		i := slices.IndexFunc(d.workerList(), func(w controlproto.WorkerInfo) bool { return w.Worker == victim.Worker })
		return i >= 0 && d.workerList()[i].PID != victim.PID
	})
	snd.wait()
	got := d.resultWhenSettled(r, "stopped")
	var drops, unsure uint64
	// The next worker counts its drops once per stats interval.
	waitFor(t, 5*time.Second, "kernel_drops to count every datagram not delivered", func() bool {
		drops, unsure = lossCounters(d.stats())
		drops, unsure = drops-dropsBefore, unsure-unsureBefore
		return got.Received+drops+unsure >= total
	})
	t.Logf("delivered %d, kernel_drops %d, restart_unconfirmed %d, sent %d", got.Received, drops, unsure, total)
	if got.Received+drops > total || got.Received+drops+unsure < total || got.Reordered != 0 || got.Duplicates != 0 || got.Corrupt != 0 {
		t.Errorf("delivered %+v, kernel_drops +%d, restart_unconfirmed +%d; want delivered + kernel_drops = %d datagrams sent, but for the unconfirmed, nothing reordered, duplicated or corrupt",
			deliveryOf(got), drops, unsure, total)
	}
	if !strings.Contains(d.proc.Output(), "killing worker") {
		t.Error("the supervisor did not log killing the stopped worker")
	}
}
