package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/tracing"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// fakePipe is a non-blocking pipe with room bytes of free space; the test
// plays the reader by raising room (setRoom while an encoder runs).
type fakePipe struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	room int
}

func (p *fakePipe) setRoom(n int) {
	p.mu.Lock()
	p.room = n
	p.mu.Unlock()
}

func (p *fakePipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.room == 0 {
		return -1, syscall.EAGAIN
	}
	n := min(len(b), p.room)
	p.buf.Write(b[:n])
	p.room -= n
	if n < len(b) {
		return n, syscall.EAGAIN
	}
	return n, nil
}

// frames decodes every whole frame written so far.
func (p *fakePipe) frames(t *testing.T) []string {
	t.Helper()
	p.mu.Lock()
	written := bytes.Clone(p.buf.Bytes())
	p.mu.Unlock()
	fr := controlproto.NewFrameReader(bytes.NewReader(written))
	var out []string
	for {
		body, err := fr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("stats stream: %v", err)
		}
		out = append(out, string(body))
	}
}

// reportNow makes rp report and waits for the encoder to write the
// snapshot, or give it up, and for the verdict to be applied.
func reportNow(t *testing.T, rp *reporter, now time.Time, db *ruleDB, c *stats.WorkerCounters) {
	t.Helper()
	t.Cleanup(rp.stop)
	rp.report(now, db, c, stats.RingUsage{})
	if !rp.flush(db, c, time.Now().Add(5*time.Second)) {
		t.Fatal("the encoder still holds the snapshot after 5 s")
	}
}

func TestFrameWriterKeepsFramesWhole(t *testing.T) {
	p := &fakePipe{room: 5}
	fw := frameWriter{write: p.write}
	send := func(v string, want bool) {
		t.Helper()
		if ok, err := fw.send(v); ok != want || err != nil {
			t.Fatalf("send(%q) = %v, %v; want %v", v, ok, err, want)
		}
	}
	send("first frame", true) // 4 of its bytes go out, the rest waits
	send("dropped", false)    // the pipe is still full
	p.room = 100
	send("second frame", true) // finishes the first, then goes whole
	p.room = 0
	send("no room", false)
	want := []string{`"first frame"`, `"second frame"`}
	if diff := cmp.Diff(want, p.frames(t)); diff != "" {
		t.Errorf("frames read (-want +got):\n%s", diff)
	}
	if fw.busy() {
		t.Error("busy after every started frame was finished")
	}
}

func TestReporter(t *testing.T) {
	p := &fakePipe{room: 1 << 20}
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.add(wrule("b", 2, "239.1.1.2:5001", "239.2.2.2:6000@0"))
	db.commit()
	var c stats.WorkerCounters
	rp := reporter{worker: 3, pid: 42, backend: "mmsg", fw: frameWriter{write: p.write}, log: testLogger(nil)}
	now := time.Unix(1000, 0)
	last := func() stats.Snapshot {
		t.Helper()
		frames := p.frames(t)
		var s stats.Snapshot
		if err := json.Unmarshal([]byte(frames[len(frames)-1]), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	ruleIDs := func(s stats.Snapshot) []string {
		var ids []string
		for _, r := range s.Rules {
			ids = append(ids, r.ID)
		}
		return ids
	}

	reportNow(t, &rp, now, db, &c)
	s := last()
	if diff := cmp.Diff([]string{"b"}, ruleIDs(s)); diff != "" {
		t.Errorf("first snapshot: only b, which has an error, changed (-want +got):\n%s", diff)
	}
	if s.Worker != 3 || s.PID != 42 || s.Seq != 1 || s.Backend != "mmsg" || s.RulesetHash != db.Hash() ||
		s.UnixNano != now.UnixNano() {
		t.Errorf("snapshot header %+v", s)
	}

	reportNow(t, &rp, now, db, &c)
	if s := last(); s.Seq != 2 || len(s.Rules) != 0 {
		t.Errorf("heartbeat without changes: seq %d, %d rules; want seq 2, none", s.Seq, len(s.Rules))
	}

	db.byID["a"].packetsIn = 5
	p.room = 0
	reportNow(t, &rp, now, db, &c)
	if c.StatsDropped != 1 {
		t.Errorf("StatsDropped = %d after a full pipe, want 1", c.StatsDropped)
	}
	p.room = 1 << 20
	reportNow(t, &rp, now, db, &c)
	s = last()
	if diff := cmp.Diff([]string{"a"}, ruleIDs(s)); diff != "" {
		t.Errorf("after a dropped snapshot the change is still reported (-want +got):\n%s", diff)
	}
	if s.Seq != 4 || s.Counters.StatsDropped != 1 {
		t.Errorf("seq %d, stats_dropped %d; want 4 (dropped ones count) and 1", s.Seq, s.Counters.StatsDropped)
	}
}

func TestOutputFailureLoggedOncePerTransition(t *testing.T) {
	var logs bytes.Buffer
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	d := &dispatcher{db: db}
	rp := reporter{fw: frameWriter{write: (&fakePipe{room: 1 << 20}).write}, log: testLogger(&logs)}
	o := &db.byID["a"].outputs[0]
	for range 3 { // three periods of failures
		for range 100 {
			d.failed(o, syscall.EAGAIN)
		}
		reportNow(t, &rp, time.Now(), db, &d.c)
	}
	for range 2 {
		d.sent(o, 10)
		reportNow(t, &rp, time.Now(), db, &d.c)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Err string }
		mustNoErr(t, json.Unmarshal([]byte(line), &rec))
		msgs = append(msgs, rec.Msg+": "+rec.Err)
	}
	want := []string{"output dropping packets: resource temporarily unavailable", "output recovered: "}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

// TestOutputWithoutSocketLogged checks what the log says when an output
// drops datagrams because it has no socket: why, never "errno 0", and
// that it recovered once its socket opened.
func TestOutputWithoutSocketLogged(t *testing.T) {
	var logs bytes.Buffer
	f := newFakeSockets()
	f.failOut = map[string]error{"IPv4 socket from any port on ifindex 3": errors.New("bind to source 10.99.99.99: cannot assign requested address")}
	db := newRuleDB(f, testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.3.3.3:6000@0"))
	db.commit()
	d := &dispatcher{db: db}
	s := &recordSender{d: d}
	rp := reporter{fw: frameWriter{write: (&fakePipe{room: 1 << 20}).write}, log: testLogger(&logs)}
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), []byte("payload")))
	for range 3 { // three periods of drops: logged once
		d.forward(2, 0, pkt, len(pkt), 0, 0, s)
		reportNow(t, &rp, time.Now(), db, &d.c)
	}
	// A drop, then the socket opens before the report: the drop was
	// still for want of a socket.
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)
	f.failOut = nil
	db.retry()
	reportNow(t, &rp, time.Now(), db, &d.c)
	d.forward(2, 0, pkt, len(pkt), 0, 0, s) // leaves
	reportNow(t, &rp, time.Now(), db, &d.c)

	var got []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Output, Err string }
		mustNoErr(t, json.Unmarshal([]byte(line), &rec))
		got = append(got, rec.Msg+" "+rec.Output+": "+rec.Err)
	}
	want := []string{
		"output dropping packets 239.2.2.2:6000@if3: output socket not open: bind to source 10.99.99.99: cannot assign requested address",
		"output dropping packets 239.3.3.3:6000@if0: output socket not open: interface if0 does not exist",
		"output recovered 239.2.2.2:6000@if3: ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), "errno 0") {
		t.Errorf("the log says errno 0:\n%s", logs.String())
	}
}

// TestReporterHandoff checks the handoff between the loop and the encoder
// goroutine: a snapshot is dropped while the encoder still holds the last
// one, rules are marked reported with the counters the snapshot carried
// (not those of when the verdict came back), trace events of a dropped
// snapshot come again, and the final snapshot waits for the one before.
func TestReporterHandoff(t *testing.T) {
	p := &fakePipe{room: 10} // the first frame goes out in part
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	db.setTraces([]controlproto.WorkerTrace{{ID: "a", Limit: 10}})
	db.commit()
	a, tr := db.byID["a"], db.traces["a"]
	var c stats.WorkerCounters
	rp := reporter{worker: 1, fw: frameWriter{write: p.write}, log: testLogger(nil)}
	rp.buf.traces = make([]traceCopy, 0, 10) // as grown by earlier snapshots (TestReporterGrowsTraces)
	t.Cleanup(rp.stop)
	snaps := func() []stats.Snapshot {
		t.Helper()
		var out []stats.Snapshot
		for _, f := range p.frames(t) {
			var s stats.Snapshot
			mustNoErr(t, json.Unmarshal([]byte(f), &s))
			out = append(out, s)
		}
		return out
	}
	now := time.Unix(1000, 0)

	a.packetsIn = 1
	tr.next(tracing.Received, 0)
	rp.report(now, db, &c, stats.RingUsage{}) // seq 1: the encoder keeps retrying its frame
	a.packetsIn = 2                           // after the copy: not in seq 1
	rp.report(now, db, &c, stats.RingUsage{}) // seq 2: dropped, the encoder holds seq 1
	if c.StatsDropped != 1 || !rp.inFlight {
		t.Fatalf("StatsDropped %d, in flight %v while the encoder holds a frame; want 1, true", c.StatsDropped, rp.inFlight)
	}
	p.setRoom(1 << 20)
	if !rp.flush(db, &c, time.Now().Add(5*time.Second)) {
		t.Fatal("the encoder did not finish the frame")
	}
	if a.reported.packetsIn != 1 || tr.n != 0 {
		t.Errorf("after seq 1 was sent: rule reported with packets_in %d, %d trace events left; want 1 (what seq 1 carried), 0",
			a.reported.packetsIn, tr.n)
	}

	// A snapshot the pipe cannot take at all: its rule and events come
	// again in the next one, which counts it dropped.
	tr.next(tracing.Sent, 0)
	p.setRoom(0)
	reportNow(t, &rp, now, db, &c)
	p.setRoom(1 << 20)
	reportNow(t, &rp, now, db, &c)
	// The final snapshot (finalReport): wait for the one before, report,
	// wait for it.
	a.packetsIn = 3
	p.setRoom(10)
	rp.report(now, db, &c, stats.RingUsage{})
	p.setRoom(1 << 20)
	rp.flush(db, &c, time.Now().Add(5*time.Second))
	reportNow(t, &rp, now, db, &c)

	type brief struct {
		Seq, Dropped, PacketsIn uint64
		Events                  int
	}
	var got []brief
	for _, s := range snaps() {
		b := brief{Seq: s.Seq, Dropped: s.Counters.StatsDropped, Events: len(s.Trace)}
		if len(s.Rules) > 0 {
			b.PacketsIn = s.Rules[0].PacketsIn
		}
		got = append(got, b)
	}
	want := []brief{
		{Seq: 1, PacketsIn: 1, Events: 1},
		{Seq: 4, Dropped: 2, PacketsIn: 2, Events: 1}, // seq 3 was dropped
		{Seq: 5, Dropped: 2, PacketsIn: 3},
		{Seq: 6, Dropped: 2}, // the final snapshot: nothing changed
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshots written (-want +got):\n%s", diff)
	}
}

// TestReporterSteps checks that a snapshot of more rules than a step takes
// is copied over several steps, dropping a snapshot due meanwhile, and
// starts over when the rules change under it.
func TestReporterSteps(t *testing.T) {
	p, db := pipeAndRules(5)
	var c stats.WorkerCounters
	rp := reporter{fw: frameWriter{write: p.write}, log: testLogger(nil), perStep: 2}
	t.Cleanup(rp.stop)
	changeAll := func() {
		for _, r := range db.byID {
			r.packetsIn++
		}
	}
	until := time.Now().Add(5 * time.Second)
	lastRules := func() []string {
		t.Helper()
		frames := p.frames(t)
		var s stats.Snapshot
		mustNoErr(t, json.Unmarshal([]byte(frames[len(frames)-1]), &s))
		var ids []string
		for _, r := range s.Rules {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return ids
	}

	changeAll()
	rp.report(time.Now(), db, &c, stats.RingUsage{}) // rules 1-2
	if !rp.copying {
		t.Fatal("5 rules copied in one step of 2")
	}
	rp.report(time.Now(), db, &c, stats.RingUsage{}) // due while copying: dropped
	rp.step(db)                                      // rules 3-4
	rp.step(db)                                      // rule 5, handed off
	if rp.copying || !rp.flush(db, &c, until) {
		t.Fatal("the snapshot was not handed off after 3 steps")
	}
	if diff := cmp.Diff([]string{"r0", "r1", "r2", "r3", "r4"}, lastRules()); diff != "" {
		t.Errorf("rules of the stepwise snapshot (-want +got):\n%s", diff)
	}
	if c.StatsDropped != 1 {
		t.Errorf("StatsDropped = %d, want 1: a snapshot came due while one was being copied", c.StatsDropped)
	}

	changeAll()
	rp.report(time.Now(), db, &c, stats.RingUsage{})
	db.remove("r1")
	db.commit()
	rp.complete(db)
	rp.flush(db, &c, until)
	if diff := cmp.Diff([]string{"r0", "r2", "r3", "r4"}, lastRules()); diff != "" {
		t.Errorf("rules of the snapshot the ruleset changed under (-want +got):\n%s", diff)
	}

	// Rules changing under every step: the second change copies the
	// rest at once, so the snapshot leaves.
	changeAll()
	rp.report(time.Now(), db, &c, stats.RingUsage{})
	db.remove("r2")
	db.commit()
	rp.step(db) // restarts, copies 2
	if !rp.copying {
		t.Fatal("3 rules copied in one step of 2 after the first change")
	}
	db.remove("r3")
	db.commit()
	rp.step(db) // restarts again: copies all
	if rp.copying || !rp.flush(db, &c, until) {
		t.Fatal("a snapshot whose rules changed twice under it was not handed off")
	}
	if diff := cmp.Diff([]string{"r0", "r4"}, lastRules()); diff != "" {
		t.Errorf("rules of the snapshot the ruleset changed under twice (-want +got):\n%s", diff)
	}

	// Shutdown while a snapshot is being copied (finalReport): that one
	// is finished and written, then the final one.
	changeAll()
	rp.report(time.Now(), db, &c, stats.RingUsage{})
	seq := rp.seq
	if !rp.finish(db, &c, until) {
		t.Fatal("finish did not finish")
	}
	rp.report(time.Now(), db, &c, stats.RingUsage{})
	if !rp.finish(db, &c, until) {
		t.Fatal("finish did not finish the final snapshot")
	}
	frames := p.frames(t)
	var last stats.Snapshot
	mustNoErr(t, json.Unmarshal([]byte(frames[len(frames)-1]), &last))
	if last.Seq != seq+1 || c.StatsDropped != 1 {
		t.Errorf("final snapshot seq %d, StatsDropped %d; want %d (written, after the one being copied), 1", last.Seq, c.StatsDropped, seq+1)
	}
}

// TestFrameWriterEncodesAsAppendFrame checks that the frame writer's reused
// encoder makes the bytes controlproto.AppendFrame does.
func TestFrameWriterEncodesAsAppendFrame(t *testing.T) {
	var fw frameWriter
	snap := stats.Snapshot{Worker: 1, Seq: 2, Backend: "<uring>", Rules: []stats.RuleCounters{{ID: "a&b",
		Outputs: []stats.OutputCounters{{PacketsOut: 3}}}}, Trace: []tracing.Event{{Rule: "a&b", Kind: tracing.Received, Data: []byte("x")}}}
	for range 2 { // the second time in the reused buffer
		got, err := fw.encode(&snap)
		mustNoErr(t, err)
		want, err := controlproto.AppendFrame(nil, &snap)
		mustNoErr(t, err)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame\n%q\nwant\n%q", got, want)
		}
	}
}

// TestReporterGrowsTraces checks that the loop does not allocate for trace
// events: the first snapshot with events has no room for them, and they
// come with the next one, for which the encoder made room.
func TestReporterGrowsTraces(t *testing.T) {
	p := &fakePipe{room: 1 << 20}
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.setTraces([]controlproto.WorkerTrace{{ID: "a", Limit: 10, Snaplen: 8}})
	db.commit()
	s := db.traces["a"].next(tracing.Received, 0)
	db.traces["a"].snap(s, []byte("payload"))
	var c stats.WorkerCounters
	rp := reporter{fw: frameWriter{write: p.write}, log: testLogger(nil)}
	var events []int
	for range 3 {
		reportNow(t, &rp, time.Now(), db, &c)
		frames := p.frames(t)
		var snap stats.Snapshot
		mustNoErr(t, json.Unmarshal([]byte(frames[len(frames)-1]), &snap))
		events = append(events, len(snap.Trace))
		if len(snap.Trace) > 0 && string(snap.Trace[0].Data) != "payload" {
			t.Errorf("event data %q, want payload", snap.Trace[0].Data)
		}
	}
	if diff := cmp.Diff([]int{0, 1, 0}, events); diff != "" {
		t.Errorf("events per snapshot (-want +got):\n%s", diff)
	}
}

// TestReporterBudget checks that rules a snapshot's budget left out come
// first in the next one, so that a ruleset whose changes never fit one
// snapshot still has every rule reported in turn.
func TestReporterBudget(t *testing.T) {
	p, db := pipeAndRules(4)
	var c stats.WorkerCounters
	// 194 estimated bytes a rule: the budget takes two.
	rp := reporter{fw: frameWriter{write: p.write}, log: testLogger(nil), maxBytes: 300}
	seen := map[string]int{}
	for range 2 {
		for _, r := range db.byID {
			r.packetsIn++ // every rule changes every time
		}
		reportNow(t, &rp, time.Now(), db, &c)
		frames := p.frames(t)
		var s stats.Snapshot
		mustNoErr(t, json.Unmarshal([]byte(frames[len(frames)-1]), &s))
		if len(s.Rules) != 2 {
			t.Fatalf("%d rules in a snapshot whose budget takes 2", len(s.Rules))
		}
		for _, r := range s.Rules {
			seen[r.ID]++
		}
	}
	if diff := cmp.Diff(map[string]int{"r0": 1, "r1": 1, "r2": 1, "r3": 1}, seen); diff != "" {
		t.Errorf("snapshots per rule (-want +got):\n%s", diff)
	}
}

// pipeAndRules returns a roomy fake stats pipe and a rule database of n
// committed rules r0… on groups 239.1.1.1… with one output each.
func pipeAndRules(n int) (*fakePipe, *ruleDB) {
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	for i := range n {
		db.add(wrule(fmt.Sprintf("r%d", i), 2, fmt.Sprintf("239.1.1.%d:5001", i+1), "239.2.2.2:6000@3"))
	}
	db.commit()
	return &fakePipe{room: 1 << 20}, db
}

// TestReporterCollectFreesTraces checks that the verdict on a sent snapshot,
// collected without waiting as the loop does between batches, frees the
// trace events it carried at once: a full tracer ring takes new events
// for the rest of the interval instead of counting them lost.
func TestReporterCollectFreesTraces(t *testing.T) {
	p := &fakePipe{room: 1 << 20}
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	db.setTraces([]controlproto.WorkerTrace{{ID: "a", Limit: 4}})
	db.commit()
	tr := db.traces["a"]
	var c stats.WorkerCounters
	rp := reporter{worker: 1, fw: frameWriter{write: p.write}, log: testLogger(nil)}
	rp.buf.traces = make([]traceCopy, 0, 4)
	t.Cleanup(rp.stop)
	for range 4 {
		tr.next(tracing.Received, 0)
	}
	rp.report(time.Unix(1000, 0), db, &c, stats.RingUsage{})
	for deadline := time.Now().Add(5 * time.Second); rp.inFlight; time.Sleep(time.Millisecond) {
		if rp.collect(db, &c, nil) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no verdict on the snapshot within 5 s")
		}
	}
	if tr.n != 0 {
		t.Errorf("%d trace events left in the ring after the snapshot carrying them was sent; want 0", tr.n)
	}
}
