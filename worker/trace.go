package worker

import (
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/tracing"
	"github.com/mcrelay/mcr/worker/packet"
)

// maxTraceReport bounds the estimated encoded size of the trace events one
// snapshot carries, so that a snapshot with them still fits the 1 MiB
// stats pipe in one write; the rest wait in their rings for the next one.
const maxTraceReport = 512 << 10

// tracer is the trace of one rule in this worker: a ring of events,
// allocated when the supervisor enables the trace, that the hot path fills
// and the stats tick empties into the snapshot. Nothing in it allocates
// once made. When the ring is full new events are counted as lost rather
// than overwrite ones not yet reported.
type tracer struct {
	cfg  controlproto.WorkerTrace
	ev   []traceSlot
	data []byte // cfg.Snaplen bytes per slot
	// head is the oldest unreported event, n how many there are; taken
	// of them are in the snapshot being sent (report).
	head, n, taken int
	lost           uint64 // events the full ring could not take, unreported
	lostTaken      uint64
	key            ruleset.Key // the rule's, for classifying unmatched packets
}

// traceSlot is one recorded event; addresses are IPv4-mapped like
// packet.Datagram's.
type traceSlot struct {
	nano       int64
	count      uint64
	src, dst   [16]byte
	sport      uint16
	dport      uint16
	size       int32
	dlen       int32 // payload bytes copied into the slot's data
	output     int16 // -1: none
	seg, segs  uint16
	errno      uint16
	kind       tracing.Kind
	reason     tracing.Reason
	srcUnknown bool
}

func newTracer(cfg controlproto.WorkerTrace) *tracer {
	cfg.Limit = max(1, cfg.Limit)
	cfg.Snaplen = max(0, cfg.Snaplen)
	if cfg.Limit*cfg.Snaplen > controlproto.MaxTraceBytes {
		cfg.Limit = max(1, controlproto.MaxTraceBytes/max(1, cfg.Snaplen))
	}
	return &tracer{cfg: cfg, ev: make([]traceSlot, cfg.Limit), data: make([]byte, cfg.Limit*cfg.Snaplen)}
}

// next returns the slot of a new event, stamped now and of kind k, or nil
// when the ring is full (the event is counted as lost).
func (t *tracer) next(k tracing.Kind, why tracing.Reason) *traceSlot {
	if t.n == len(t.ev) {
		t.lost++
		return nil
	}
	i := t.head + t.n
	if i >= len(t.ev) {
		i -= len(t.ev)
	}
	t.n++
	s := &t.ev[i]
	*s = traceSlot{nano: time.Now().UnixNano(), kind: k, reason: why, output: -1}
	return s
}

// snap copies the start of payload p into the data of slot s.
func (t *tracer) snap(s *traceSlot, p []byte) {
	if t.cfg.Snaplen == 0 {
		return
	}
	i := (uintptr(unsafe.Pointer(s)) - uintptr(unsafe.Pointer(&t.ev[0]))) / unsafe.Sizeof(*s)
	s.dlen = int32(copy(t.data[int(i)*t.cfg.Snaplen:(int(i)+1)*t.cfg.Snaplen], p))
}

// addrs sets the datagram addresses of s from dg.
func (s *traceSlot) addrs(src, dst *[16]byte, sport, dport uint16) {
	s.src, s.dst, s.sport, s.dport = *src, *dst, sport, dport
}

// traceIn is a traced rule's input, for events of packets on it that no
// rule wants or that did not parse.
type traceIn struct {
	ifindex int32
	t       *tracer
}

// setTraces makes ts the set of traced rules: tracers of rules no longer
// traced go, rules newly traced get a fresh ring, and a trace whose limits
// did not change keeps its ring.
func (db *ruleDB) setTraces(ts []controlproto.WorkerTrace) {
	next := make(map[string]*tracer, len(ts))
	for _, c := range ts {
		if t := db.traces[c.ID]; t != nil && t.cfg == c {
			next[c.ID] = t
			continue
		}
		next[c.ID] = newTracer(c)
	}
	if len(next) == 0 {
		next = nil
	}
	db.traces = next
	for _, r := range db.byID {
		db.attachTrace(r)
	}
	db.indexTraces()
	db.dirty = true // the inputs' filters change with commit
}

// markTracedInputs marks the inputs of traced rules traced and the others
// not, making those that changed dirty so that their filters change.
func (db *ruleDB) markTracedInputs() {
	if db.traces == nil && !db.tracedInputs {
		return
	}
	want := map[*input]bool{}
	for _, r := range db.byID {
		if r.trace != nil && r.in != nil {
			want[r.in] = true
		}
	}
	for _, in := range db.inputs {
		if in.traced != want[in] {
			in.traced, in.dirty = want[in], true
		}
	}
	db.tracedInputs = len(want) > 0
}

// attachTrace points r and its outputs at r's tracer, nil when r is not
// traced.
func (db *ruleDB) attachTrace(r *rule) {
	t := db.traces[r.wr.ID]
	if t != nil {
		t.key = r.key
	}
	r.trace = t
	for i := range r.outputs {
		r.outputs[i].trace, r.outputs[i].index = t, int16(i)
	}
}

// indexTraces lists the inputs of traced rules; nil when nothing is
// traced, which is all the hot path checks.
func (db *ruleDB) indexTraces() {
	db.traceIns = nil
	for _, r := range db.byIndex {
		if r.trace != nil {
			db.traceIns = append(db.traceIns, traceIn{ifindex: r.key.IfIndex, t: r.trace})
		}
	}
}

// traceInput records a packet on input ifindex that was dropped before a
// rule could be looked up, on every traced rule of that input. count is
// how many packets it stands for.
func (d *dispatcher) traceInput(ifindex int32, why tracing.Reason, count uint64, size int) {
	for _, ti := range d.db.traceIns {
		if ti.ifindex == ifindex {
			if s := ti.t.next(tracing.Dropped, why); s != nil {
				s.count, s.size, s.srcUnknown = count, int32(size), true
			}
		}
	}
}

// traceUnmatched records the datagram in d.dg, which matched no rule, on
// every traced rule of its input, saying how it differs from the rule.
func (d *dispatcher) traceUnmatched(ifindex int32, count int) {
	for _, ti := range d.db.traceIns {
		if ti.ifindex != ifindex {
			continue
		}
		k := &ti.t.key
		why := tracing.WrongSource
		switch {
		case k.Dst != d.dg.Dst:
			why = tracing.WrongGroup
		case k.Port != d.dg.DstPort:
			why = tracing.WrongPort
		}
		if s := ti.t.next(tracing.Unmatched, why); s != nil {
			s.addrs(&d.dg.Src, &d.dg.Dst, d.dg.SrcPort, d.dg.DstPort)
			s.size, s.count = int32(d.dg.PayloadLen), uint64(count)
		}
	}
}

// traceRule records a datagram in d.dg of the traced rule r: received
// (why 0) or dropped before its outputs. p is its payload.
func (d *dispatcher) traceRule(r *rule, why tracing.Reason, p []byte) {
	k := tracing.Received
	if why != 0 {
		k = tracing.Dropped
	}
	if s := r.trace.next(k, why); s != nil {
		s.addrs(&d.dg.Src, &d.dg.Dst, d.dg.SrcPort, d.dg.DstPort)
		s.size = int32(len(p))
		r.trace.snap(s, p)
	}
}

// traceSent records that the kernel took datagram p for its output,
// segment seg (from 0) of a send of segs datagrams.
func (d *dispatcher) traceSent(p *pending, seg, segs int) {
	o := p.o
	s := o.trace.next(tracing.Sent, 0)
	if s == nil {
		return
	}
	s.output, s.size = o.index, p.n
	if segs > 1 {
		s.seg, s.segs = uint16(seg+1), uint16(segs)
	}
	if o.d != nil {
		s.dst, s.dport = o.d.dstIP, o.d.key.dst.Port()
		if src := o.d.key.eg.Src; src.IsValid() {
			s.src = src.As16() // IPv4-mapped for IPv4
		} else {
			s.srcUnknown = true
		}
		s.sport = o.d.eg.port
	}
	if o.trace.cfg.Snaplen > 0 && p.n > 0 {
		o.trace.snap(s, unsafe.Slice(p.p, p.n))
	}
}

// traceFailed records a datagram for o that was dropped: its send failed
// with errno, or it had no socket (errno 0).
func (o *output) traceFailed(errno syscall.Errno, why tracing.Reason) {
	if s := o.traceUnsent(tracing.Dropped, why); s != nil {
		s.errno = uint16(errno)
	}
}

// traceNotSent records a datagram of n payload bytes that o did not send
// on purpose (why): not a drop.
func (o *output) traceNotSent(why tracing.Reason, n int) {
	if s := o.traceUnsent(tracing.NotSent, why); s != nil {
		s.size = int32(n)
	}
}

// traceUnsent starts an event of o for a datagram it did not send, with
// the output's destination; nil when o is not traced.
func (o *output) traceUnsent(kind tracing.Kind, why tracing.Reason) *traceSlot {
	s := o.trace.next(kind, why)
	if s == nil {
		return nil
	}
	s.output, s.srcUnknown = o.index, true
	if o.d != nil {
		s.dst, s.dport = o.d.dstIP, o.d.key.dst.Port()
	}
	return s
}

// traceCopy is one trace event as the loop copied it for a snapshot: a
// slot, its payload at data[off:off+slot.dlen] of the snapshot buffer, or
// (lost > 0) the count of events a full ring could not take.
type traceCopy struct {
	rule string
	slot traceSlot
	off  int
	lost uint64
	nano int64 // of a lost count
}

// copyTraces appends to evs, and their payloads to data, the unreported
// events of every tracer, as much as fits maxTraceReport and the capacity
// of evs and data, marking them taken; commitTraces forgets them once the
// snapshot carrying them was sent. It copies plain values only and never
// allocates: it returns how many events, and payload bytes, it would have
// taken with room enough, for the encoder to grow evs and data to, and the
// events left out wait in their rings. The encoder makes the events
// (snapshotBuf.events).
func (db *ruleDB) copyTraces(evs []traceCopy, data []byte) (_ []traceCopy, _ []byte, wantEvs, wantData int) {
	budget := maxTraceReport
	full := false // no room for the next event
	for id, t := range db.traces {
		t.taken, t.lostTaken = 0, 0
		for k := 0; budget > 0 && k < t.n; k++ {
			i := (t.head + k) % len(t.ev)
			s := &t.ev[i]
			wantEvs, wantData = wantEvs+1, wantData+int(s.dlen)
			budget -= 200 + 2*int(s.dlen)
			if full = full || len(evs) == cap(evs) || len(data)+int(s.dlen) > cap(data); full {
				continue
			}
			evs = append(evs, traceCopy{rule: id, slot: *s, off: len(data)})
			data = append(data, t.data[i*t.cfg.Snaplen:][:s.dlen]...)
			t.taken++
		}
		if t.lost > 0 && budget > 0 {
			wantEvs++
			if full = full || len(evs) == cap(evs); !full {
				t.lostTaken = t.lost
				evs = append(evs, traceCopy{rule: id, lost: t.lost, nano: time.Now().UnixNano()})
			}
		}
	}
	return evs, data, wantEvs, wantData
}

// events appends to evs the events of b's trace copies, as worker.
func (b *snapshotBuf) events(evs []tracing.Event, worker int) []tracing.Event {
	for i := range b.traces {
		tc := &b.traces[i]
		if tc.lost > 0 {
			evs = append(evs, tracing.Event{UnixNano: tc.nano, Worker: worker, Rule: tc.rule,
				Kind: tracing.Lost, Count: tc.lost})
			continue
		}
		e := tc.slot.event(tc.rule, worker, nil)
		if n := int(tc.slot.dlen); n > 0 {
			e.Data = b.data[tc.off : tc.off+n : tc.off+n] // b's until the encoder is done with it
		}
		evs = append(evs, e)
	}
	return evs
}

// commitTraces forgets the events traceEvents took: they were sent.
func (db *ruleDB) commitTraces() {
	for _, t := range db.traces {
		t.head = (t.head + t.taken) % len(t.ev)
		t.n -= t.taken
		t.lost -= t.lostTaken
		t.taken, t.lostTaken = 0, 0
	}
}

// event is the report of slot s of rule id; data is its payload bytes,
// copied.
func (s *traceSlot) event(id string, worker int, data []byte) tracing.Event {
	e := tracing.Event{UnixNano: s.nano, Worker: worker, Rule: id, Kind: s.kind, Reason: s.reason,
		Size: int(s.size)}
	if s.count > 1 || s.reason == tracing.RingFull {
		e.Count = s.count
	}
	if s.output >= 0 {
		o := int(s.output)
		e.Output = &o
	}
	if s.segs > 1 {
		e.Segment, e.Segments = int(s.seg), int(s.segs)
	}
	if s.errno != 0 {
		e.Errno, e.Error = int(s.errno), syscall.Errno(s.errno).Error()
	}
	if s.dport != 0 || s.dst != ([16]byte{}) {
		e.Destination = netip.AddrPortFrom(netip.AddrFrom16(s.dst).Unmap(), s.dport).String()
	}
	if !s.srcUnknown {
		e.Source = netip.AddrPortFrom(netip.AddrFrom16(s.src).Unmap(), s.sport).String()
	} else if s.sport != 0 {
		e.Source = ":" + strconv.Itoa(int(s.sport))
	}
	if len(data) > 0 {
		e.Data = append([]byte(nil), data...)
	}
	return e
}

// traceReceived records the datagrams of the packet in d.dg, count
// segments of size bytes (a UDP GSO aggregate) or one, as received by the
// traced rule r.
func (d *dispatcher) traceReceived(r *rule, pkt []byte, ip, size, count int) {
	off, end := ip+d.dg.PayloadOff, ip+d.dg.PayloadOff+d.dg.PayloadLen
	for range count {
		n := min(size, end-off)
		d.traceRule(r, 0, pkt[off:off+n])
		off += n
	}
}

// traceReason is the trace reason of a packet the parser refused.
func traceReason(r packet.Reason) tracing.Reason {
	switch r {
	case packet.Fragment:
		return tracing.Fragment
	case packet.NotUDP:
		return tracing.NotUDP
	case packet.VLANTagged:
		return tracing.VLANTagged
	}
	return tracing.Malformed
}
