package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// fakePipe is a non-blocking pipe with room bytes of free space; the test
// plays the reader by raising room.
type fakePipe struct {
	buf  bytes.Buffer
	room int
}

func (p *fakePipe) write(b []byte) (int, error) {
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
	fr := controlproto.NewFrameReader(bytes.NewReader(p.buf.Bytes()))
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

	rp.report(now, db, &c, stats.RingUsage{})
	s := last()
	if diff := cmp.Diff([]string{"b"}, ruleIDs(s)); diff != "" {
		t.Errorf("first snapshot: only b, which has an error, changed (-want +got):\n%s", diff)
	}
	if s.Worker != 3 || s.PID != 42 || s.Seq != 1 || s.Backend != "mmsg" || s.RulesetHash != db.Hash() ||
		s.UnixNano != now.UnixNano() {
		t.Errorf("snapshot header %+v", s)
	}

	rp.report(now, db, &c, stats.RingUsage{})
	if s := last(); s.Seq != 2 || len(s.Rules) != 0 {
		t.Errorf("heartbeat without changes: seq %d, %d rules; want seq 2, none", s.Seq, len(s.Rules))
	}

	db.byID["a"].packetsIn = 5
	p.room = 0
	rp.report(now, db, &c, stats.RingUsage{})
	if c.StatsDropped != 1 {
		t.Errorf("StatsDropped = %d after a full pipe, want 1", c.StatsDropped)
	}
	p.room = 1 << 20
	rp.report(now, db, &c, stats.RingUsage{})
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
		rp.report(time.Now(), db, &d.c, stats.RingUsage{})
	}
	for range 2 {
		d.sent(o, 10)
		rp.report(time.Now(), db, &d.c, stats.RingUsage{})
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
		rp.report(time.Now(), db, &d.c, stats.RingUsage{})
	}
	// A drop, then the socket opens before the report: the drop was
	// still for want of a socket.
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)
	f.failOut = nil
	db.retry()
	rp.report(time.Now(), db, &d.c, stats.RingUsage{})
	d.forward(2, 0, pkt, len(pkt), 0, 0, s) // leaves
	rp.report(time.Now(), db, &d.c, stats.RingUsage{})

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
