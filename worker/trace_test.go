package worker

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/tracing"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// traceSender completes every send at once, as a backend does, tracing
// it.
type traceSender struct{ d *dispatcher }

func (s traceSender) send(o *output, buf int, pkt []byte, off, n int, hdr []byte) {
	s.d.sent(o, n)
	if o.trace != nil {
		s.d.traceSent(&pending{o: o, p: unsafe.SliceData(pkt[off:]), n: int32(n)}, 0, 1)
	}
}

// brief is what a test checks of an event.
type brief struct {
	Kind        tracing.Kind
	Reason      tracing.Reason
	Source, Dst string
	Size        int
	Output      int
	Data        string
}

func briefs(evs []tracing.Event) []brief {
	var b []brief
	for _, e := range evs {
		o := -1
		if e.Output != nil {
			o = *e.Output
		}
		b = append(b, brief{e.Kind, e.Reason, e.Source, e.Destination, e.Size, o, string(e.Data)})
	}
	return b
}

func TestTraceEvents(t *testing.T) {
	f := newFakeSockets()
	db := newRuleDB(f, testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.4.4.4:6000@0"))
	db.add(wrule("b", 5, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	d := &dispatcher{db: db}
	s := traceSender{d}
	send := func(ifindex int32, src, dst string, payload string) {
		pkt := plain(packettest.BuildUDP4(ap(src), ap(dst), []byte(payload)))
		d.forward(ifindex, 0, pkt, len(pkt), 0, 0, s)
	}
	send(2, "10.0.0.9:4000", "239.1.1.1:5001", "untraced")
	if db.traceIns != nil || db.byID["a"].trace != nil {
		t.Fatal("a rule is traced before any trace was enabled")
	}

	db.setTraces([]controlproto.WorkerTrace{{ID: "a", Limit: 6, Snaplen: 4}})
	db.commit()
	if !db.inputs[2].traced || db.inputs[5].traced {
		t.Fatal("want input 2, a's, traced (its prefilter lets everything through), and input 5 not")
	}
	send(2, "10.0.0.9:4000", "239.1.1.1:5001", "hello")
	send(2, "10.0.0.9:4000", "239.1.1.1:5002", "port")
	send(2, "10.0.0.9:4000", "239.9.9.9:5001", "group")
	send(5, "10.0.0.9:4000", "239.1.1.1:5001", "other input, untraced rule")
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), []byte("x")))
	d.forward(2, 0, pkt[:len(pkt)-4], len(pkt)-4, 0, 0, s) // truncated

	evs := traceEvents(db, 7)
	want := []brief{
		{tracing.Received, 0, "10.0.0.9:4000", "239.1.1.1:5001", 5, -1, "hell"},
		{tracing.Sent, 0, ":40100", "239.2.2.2:6000", 5, 0, "hell"},
		{tracing.Dropped, tracing.NoSocket, "", "", 0, 1, ""}, // ifindex 0: no destination resolved
		{tracing.Unmatched, tracing.WrongPort, "10.0.0.9:4000", "239.1.1.1:5002", 4, -1, ""},
		{tracing.Unmatched, tracing.WrongGroup, "10.0.0.9:4000", "239.9.9.9:5001", 5, -1, ""},
		{tracing.Dropped, tracing.Malformed, "", "", 25, -1, ""}, // the packet's length
	}
	if diff := cmp.Diff(want, briefs(evs)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, e := range evs {
		if e.Worker != 7 || e.Rule != "a" || e.UnixNano == 0 {
			t.Errorf("event %+v: want worker 7, rule a and a time", e)
		}
	}

	// Not yet committed: the next report carries them again; the ring is
	// full, so more are lost and counted.
	send(2, "10.0.0.9:4000", "239.1.1.1:5001", "more")
	if evs := traceEvents(db, 7); len(evs) != 7 || evs[6].Kind != tracing.Lost || evs[6].Count != 3 {
		t.Fatalf("uncommitted report: got %+v, want the 6 events again and 3 lost", briefs(evs))
	}
	db.commitTraces()
	if evs := traceEvents(db, 7); len(evs) != 0 {
		t.Fatalf("after commit: %+v, want nothing", briefs(evs))
	}

	// The trace survives a rule change (the rule is rebuilt) and ends
	// with an empty set.
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	send(2, "10.0.0.9:4000", "239.1.1.1:5001", "after")
	if evs := traceEvents(db, 7); len(evs) != 2 {
		t.Fatalf("after a rule change: %+v, want received and sent", briefs(evs))
	}
	db.setTraces(nil)
	db.commit()
	if db.inputs[2].traced {
		t.Error("input 2 still traced (unfiltered) after the trace ended")
	}
	if db.traceIns != nil || db.byID["a"].trace != nil || db.byID["a"].outputs[0].trace != nil {
		t.Fatal("still traced after the trace set was emptied")
	}
}

// BenchmarkDispatchTrace is BenchmarkDispatch's 1,024-byte case (the
// checksum marked valid) with each send completed and, when traced,
// recorded as a backend does: nothing traced; another rule on the same
// input traced (so the input has a tracer, the packet's rule none); the
// packet's rule traced without payload bytes, and with 64 or 1,024 of
// them (mcrctl capture). Each op is one packet: one received and two sent
// events when traced. The ring is emptied whenever it is nearly full, as
// the stats tick does, without the tick's encoding (which runs once per
// stats interval, off the packet path).
func BenchmarkDispatchTrace(b *testing.B) {
	for _, bc := range []struct {
		name    string
		traced  string // rule id; "" none
		snaplen int
	}{
		{"off", "", 0},
		{"other rule traced", "239.1.0.1", 0},
		{"on", "239.1.1.200", 0},
		{"on snaplen=64", "239.1.1.200", 64},
		{"on snaplen=1024", "239.1.1.200", 1024},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, pkt := benchSetup(b, 1024)
			pkt[0] = vnetFDataValid
			if bc.traced != "" {
				d.db.setTraces([]controlproto.WorkerTrace{{ID: bc.traced, Limit: 1000, Snaplen: bc.snaplen}})
				d.db.commit()
			}
			t := d.db.traces[bc.traced] // nil when off
			s := traceSender{d}
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu := threadCPU()
			for b.Loop() {
				d.forward(2, 0, pkt, len(pkt), 0, 0, s)
				if t != nil && t.n > len(t.ev)-4 {
					t.head, t.n = 0, 0
				}
			}
			cpu = threadCPU() - cpu
			if d.c.RxPackets == 0 || d.c.NoMatch != 0 {
				b.Fatalf("counters %+v: the packet did not match", d.c)
			}
			if t != nil && t.lost != 0 {
				b.Fatalf("%d events lost: the benchmark measured the full ring", t.lost)
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestTraceIdleOutput: a traced rule's output that is idle (when_joined,
// no listener) records each datagram it does not send as not_sent, reason
// idle, with the output's destination; not as a drop. Once it sends again
// the trace shows sent events for it.
func TestTraceIdleOutput(t *testing.T) {
	f := newFakeSockets()
	db := newRuleDB(f, testLogger(nil))
	wr := wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.3.3.3:6000@3")
	wr.OutputIdle = []bool{false, true}
	db.add(wr)
	db.setTraces([]controlproto.WorkerTrace{{ID: "a", Limit: 10}})
	db.commit()
	d := &dispatcher{db: db}
	s := traceSender{d}
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), []byte("hello")))
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)
	wr.OutputIdle = nil
	db.add(wr)
	db.commit()
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)

	want := []brief{
		{tracing.Received, 0, "10.0.0.9:4000", "239.1.1.1:5001", 5, -1, ""},
		{tracing.Sent, 0, ":40100", "239.2.2.2:6000", 5, 0, ""},
		{tracing.NotSent, tracing.Idle, "", "239.3.3.3:6000", 5, 1, ""},
		{tracing.Received, 0, "10.0.0.9:4000", "239.1.1.1:5001", 5, -1, ""},
		{tracing.Sent, 0, ":40100", "239.2.2.2:6000", 5, 0, ""},
		{tracing.Sent, 0, ":40100", "239.3.3.3:6000", 5, 1, ""},
	}
	if diff := cmp.Diff(want, briefs(traceEvents(db, 0))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	r := db.byID["a"]
	if o := r.counters(r.errorText()).Outputs[1]; o.NotSentIdle != 1 || o.Errors != 0 || o.PacketsOut != 1 {
		t.Errorf("idle output counted %+v; want 1 not sent while idle, 1 sent, no error", o)
	}
}

// traceEvents takes db's unreported events as a snapshot does: copied on
// the loop, made into events by the encoder.
func traceEvents(db *ruleDB, worker int) []tracing.Event {
	b := snapshotBuf{traces: make([]traceCopy, 0, 100), data: make([]byte, 0, 1000)}
	b.traces, b.data, _, _ = db.copyTraces(b.traces, b.data)
	return b.events(nil, worker)
}
