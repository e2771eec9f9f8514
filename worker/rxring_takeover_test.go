package worker

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// takeoverBlock is the state of one block of a ring an earlier worker
// left: its status, its seq_num, how many packets it holds, and what its
// private area says (seq, done and confirmed; zero: never written).
type takeoverBlock struct {
	status                uint32
	seq                   uint64
	pkts                  int
	privSeq, privN, privC uint64
}

// takeoverRing lays out a ring of such blocks, packet j of a block
// carrying "b<block>p<j>".
func takeoverRing(blocks []takeoverBlock) *rxRing {
	r := newRxRing(make([]byte, len(blocks)*testBlockSize), len(blocks), testBlockSize)
	for b, tb := range blocks {
		pkts := make([]fakePkt, tb.pkts)
		for j := range pkts {
			pkts[j] = fakePkt{data: fmt.Appendf(nil, "b%dp%d", b, j)}
		}
		blk := r.block(b)
		fakeBlock(blk, tb.status, pkts...)
		binary.LittleEndian.PutUint64(blk[blockSeqOff:], tb.seq)
		binary.LittleEndian.PutUint64(blk[blockHdrLen+privSeqOff:], tb.privSeq)
		binary.LittleEndian.PutUint32(blk[blockHdrLen+privDoneOff:], uint32(tb.privN))
		binary.LittleEndian.PutUint32(blk[blockHdrLen+privConfOff:], uint32(tb.privC))
	}
	return r
}

const (
	usr    = tpStatusUser
	kernel = tpStatusKernel
)

// TestRingAdopt checks what a worker finds in a ring it maps: the blocks
// to relay first, oldest first, each from the first packet no earlier
// worker handled; the blocks given back at once; and where it reads on.
func TestRingAdopt(t *testing.T) {
	type result struct {
		Backlog []int    // in order
		From    []uint32 // per backlog block
		Next    int
		Status  []uint32 // of every block after adopt
		Adopted adopted
	}
	for _, tc := range []struct {
		name   string
		blocks []takeoverBlock
		want   result
	}{
		{"a fresh ring: the kernel fills block 0",
			[]takeoverBlock{{kernel, 1, 0, 0, 0, 0}, {kernel, 0, 0, 0, 0, 0}, {kernel, 0, 0, 0, 0, 0}},
			result{Next: 0, Status: []uint32{kernel, kernel, kernel}}},
		{"blocks handed over and never taken, the kernel filling the next",
			[]takeoverBlock{{kernel, 7, 0, 0, 0, 0}, {usr, 8, 3, 0, 0, 0}, {usr, 9, 2, 0, 0, 0}, {kernel, 10, 0, 0, 0, 0}},
			result{Backlog: []int{1, 2}, From: []uint32{0, 0}, Next: 3,
				Status: []uint32{kernel, usr, usr, kernel}, Adopted: adopted{Backlog: 2}}},
		{"frozen: every block the user's, oldest after the newest",
			[]takeoverBlock{{usr, 12, 1, 0, 0, 0}, {usr, 13, 1, 0, 0, 0}, {usr, 10, 1, 0, 0, 0}, {usr, 11, 1, 0, 0, 0}},
			result{Backlog: []int{2, 3, 0, 1}, From: []uint32{0, 0, 0, 0}, Next: 2,
				Status: []uint32{usr, usr, usr, usr}, Adopted: adopted{Backlog: 4}}},
		{"a block taken and half sent is resumed after what was sent",
			[]takeoverBlock{{kernel, 4, 0, 0, 0, 0}, {usr, 5, 5, 5, 3, 3}, {usr, 6, 2, 0, 0, 0}, {kernel, 7, 0, 0, 0, 0}},
			result{Backlog: []int{1, 2}, From: []uint32{3, 0}, Next: 3,
				Status: []uint32{kernel, usr, usr, kernel}, Adopted: adopted{Backlog: 2, Resumed: 1, Skipped: 3}}},
		{"packets handed to a send call that never returned count as unconfirmed",
			[]takeoverBlock{{kernel, 4, 0, 0, 0, 0}, {usr, 5, 5, 5, 3, 1}, {usr, 6, 2, 0, 0, 0}, {kernel, 7, 0, 0, 0, 0}},
			result{Backlog: []int{1, 2}, From: []uint32{3, 0}, Next: 3,
				Status: []uint32{kernel, usr, usr, kernel}, Adopted: adopted{Backlog: 2, Resumed: 1, Skipped: 3, Unconfirmed: 2}}},
		{"a block sent whole but not given back goes back to the kernel",
			[]takeoverBlock{{usr, 5, 4, 5, 4, 4}, {usr, 6, 2, 0, 0, 0}, {kernel, 7, 0, 0, 0, 0}},
			result{Backlog: []int{1}, From: []uint32{0}, Next: 2,
				Status: []uint32{kernel, usr, kernel}, Adopted: adopted{Backlog: 1, Returned: 1}}},
		{"a block handled whole, its last send call not returned",
			[]takeoverBlock{{usr, 5, 4, 5, 4, 2}, {usr, 6, 2, 0, 0, 0}, {kernel, 7, 0, 0, 0, 0}},
			result{Backlog: []int{1}, From: []uint32{0}, Next: 2,
				Status: []uint32{kernel, usr, kernel}, Adopted: adopted{Backlog: 1, Returned: 1, Unconfirmed: 2}}},
		{"progress of an earlier fill of the block does not count",
			[]takeoverBlock{{kernel, 4, 0, 0, 0, 0}, {usr, 5, 5, 1, 5, 0}, {kernel, 6, 0, 0, 0, 0}},
			result{Backlog: []int{1}, From: []uint32{0}, Next: 2,
				Status: []uint32{kernel, usr, kernel}, Adopted: adopted{Backlog: 1}}},
		{"a block held by a send in flight behind one given back",
			[]takeoverBlock{{usr, 5, 2, 5, 1, 1}, {kernel, 6, 0, 0, 0, 0}, {usr, 7, 2, 0, 0, 0}, {kernel, 8, 0, 0, 0, 0}},
			result{Backlog: []int{0, 2}, From: []uint32{1, 0}, Next: 3,
				Status: []uint32{usr, kernel, usr, kernel}, Adopted: adopted{Backlog: 2, Resumed: 1, Skipped: 1}}},
		{"the newest block is the user's: read on after it",
			[]takeoverBlock{{kernel, 2, 0, 0, 0, 0}, {usr, 3, 1, 0, 0, 0}, {kernel, 0, 0, 0, 0, 0}},
			result{Backlog: []int{1}, From: []uint32{0}, Next: 2,
				Status: []uint32{kernel, usr, kernel}, Adopted: adopted{Backlog: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := takeoverRing(tc.blocks)
			got := result{Adopted: r.adopt(), Next: r.next}
			for _, b := range r.backlog {
				got.Backlog = append(got.Backlog, b)
				got.From = append(got.From, r.done[b])
			}
			for b := range tc.blocks {
				got.Status = append(got.Status, *r.status(b))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("adopt (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRingAdoptWhileTheKernelMovesOn hands over block 1 and opens block 2
// right after adopt first looks at block 1, still the kernel's: block 1
// must be relayed (in the backlog, after block 0) and reading go on at
// block 2, not leave block 1 behind the position to be read a lap late
// (the kernel would freeze on it every lap, and the packets it holds last
// would never be relayed).
func TestRingAdoptWhileTheKernelMovesOn(t *testing.T) {
	r := takeoverRing([]takeoverBlock{{usr, 10, 1, 0, 0, 0}, {kernel, 11, 1, 0, 0, 0}, {kernel, 8, 0, 0, 0, 0}, {usr, 9, 1, 0, 0, 0}})
	r.testAfterLook = func(b int) {
		if b == 1 {
			*r.status(1) = usr
			binary.LittleEndian.PutUint64(r.block(2)[blockSeqOff:], 12)
		}
	}
	a := r.adopt()
	if diff := cmp.Diff([]int{3, 0, 1}, r.backlog); diff != "" || r.next != 2 || a.Backlog != 3 {
		t.Errorf("backlog (-want +got):\n%s\nnext %d, want 2; adopted %+v", diff, r.next, a)
	}
}

// TestRingUnconfirmedOfANewFill checks that what a worker confirmed of a
// block's earlier fill does not count for the next: a worker that takes
// the block filled again and dies before the send call of its first
// packets leaves them unconfirmed.
func TestRingUnconfirmedOfANewFill(t *testing.T) {
	r := takeoverRing([]takeoverBlock{{usr, 9, 3, 5, 4, 4}, {kernel, 10, 0, 0, 0, 0}})
	r.adopt()
	if b := r.take(); b != 0 {
		t.Fatalf("took block %d, want 0", b)
	}
	r.done[0] = 2
	r.publish()
	// Killed before the call; the next worker maps the ring.
	if a := newRxRing(r.mem, 2, testBlockSize).adopt(); a.Unconfirmed != 2 {
		t.Errorf("adopted %+v, want 2 packets unconfirmed", a)
	}
}

// TestRingConfirm checks what a successor counts unconfirmed: progress
// published before a send call that failed is confirmed with the next one
// that goes through; the packet being forwarded is not confirmed (its
// other outputs may still be queued); and a successor that counted a
// block's packets leaves nothing of them to count for the one after it.
func TestRingConfirm(t *testing.T) {
	r := takeoverRing([]takeoverBlock{{usr, 5, 3, 0, 0, 0}, {usr, 6, 3, 0, 0, 0}, {kernel, 7, 0, 0, 0, 0}})
	r.adopt()
	b0 := r.take() // held by its sends until the end
	r.done[b0] = 3
	r.publish() // the call fails: not confirmed
	b1 := r.take()
	r.cur, r.done[b1] = b1, 2
	r.publish()
	r.confirm() // in the middle of block 1's second packet
	// Block 0 is confirmed whole; block 1 is left with one packet
	// unconfirmed.
	next := newRxRing(r.mem, 3, testBlockSize)
	if a := next.adopt(); a.Unconfirmed != 1 {
		t.Errorf("the first successor counted %d unconfirmed, want 1", a.Unconfirmed)
	}
	if a := newRxRing(r.mem, 3, testBlockSize).adopt(); a.Unconfirmed != 0 {
		t.Errorf("the second successor counted %d unconfirmed again, want 0", a.Unconfirmed)
	}
}

// TestRingTakeBacklogFirst checks that take hands out the backlog before
// the block the kernel hands over next.
func TestRingTakeBacklogFirst(t *testing.T) {
	r := takeoverRing([]takeoverBlock{{usr, 6, 1, 0, 0, 0}, {kernel, 3, 0, 0, 0, 0}, {usr, 5, 1, 0, 0, 0}})
	r.adopt()
	var got []int
	for b := r.take(); b >= 0; b = r.take() {
		got = append(got, b)
		r.release(b)
	}
	if diff := cmp.Diff([]int{2, 0}, got); diff != "" || r.next != 1 {
		t.Errorf("blocks taken (-want +got):\n%s\nnext %d, want 1", diff, r.next)
	}
	fakeBlock(r.block(1), tpStatusUser)
	if b := r.take(); b != 1 {
		t.Errorf("took %d after the backlog, want 1, the block handed over next", b)
	}
}

// TestRingTakeoverRelaysEachPacketOnce runs a worker over a ring of three
// full blocks that dies (a panic in its sender) at every possible send,
// and a second worker that adopts the ring: what the first flushed and
// what the second sent is every packet, in order, once. The sender flushes
// every third send, publishing the ring's progress first as the backends
// do before each system call that sends.
func TestRingTakeoverRelaysEachPacketOnce(t *testing.T) {
	const blocks, perBlock = 3, 5
	var all []string
	for b := range blocks {
		for j := range perBlock {
			all = append(all, fmt.Sprintf("b%dp%d", b, j))
		}
	}
	// The first worker dies at send k, or at the call that sends
	// what the first k sends queued: published, never sent.
	for deathAt := 1; deathAt <= len(all); deathAt++ {
		for _, inCall := range []bool{false, true} {
			t.Run(fmt.Sprintf("dies at send %d, in the call %v", deathAt, inCall), func(t *testing.T) {
				mem := make([]byte, blocks*testBlockSize)
				first := ringWorker(t, mem, blocks)
				for b := range blocks {
					fillBlock(first.r.block(b), b, perBlock)
					binary.LittleEndian.PutUint64(first.r.block(b)[blockSeqOff:], uint64(10+b))
				}
				first.s.dieAt, first.s.dieInCall = deathAt, inCall
				first.run()
				lost := first.s.queued
				if !inCall {
					lost = nil
				}

				second := ringWorker(t, mem, blocks)
				a := second.r.adopt()
				second.run()
				second.s.flush()

				got := append(first.s.flushed, second.s.flushed...)
				want := slices.DeleteFunc(slices.Clone(all), func(d string) bool { return slices.Contains(lost, d) })
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("datagrams relayed, first worker then second (-want +got):\n%s", diff)
				}
				// A flush in the middle of a packet leaves it
				// unconfirmed: its other outputs may come later.
				if a.Unconfirmed < len(lost) || a.Unconfirmed > len(lost)+1 {
					t.Errorf("adopt counted %d datagrams unconfirmed, want %d (or one more): %v", a.Unconfirmed, len(lost), lost)
				}
			})
		}
	}
}

// fillBlock makes block b of a ring hold n packets that the rules of
// benchSetup relay, packet j with payload "b<b>p<j>".
func fillBlock(blk []byte, b, n int) {
	pkts := make([]fakePkt, n)
	for j := range pkts {
		pkt := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.200:5001"), fmt.Appendf(nil, "b%dp%d", b, j))
		pkts[j] = fakePkt{data: pkt}
	}
	fakeBlock(blk, tpStatusUser, pkts...)
}

// takeoverWorker is a worker with benchSetup's rules reading one ring over
// mem, with a sender that flushes every third send and can die.
type takeoverWorker struct {
	w  *worker
	in *input
	r  *rxRing
	s  *flushSender
}

func ringWorker(t *testing.T, mem []byte, blocks int) *takeoverWorker {
	d, _ := benchSetup(t, 1024)
	w := &worker{d: *d}
	r := newRxRing(mem, blocks, testBlockSize)
	w.rings.add(r)
	return &takeoverWorker{w: w, in: &input{ifindex: 2, ring: r}, r: r, s: &flushSender{rings: &w.rings}}
}

// run forwards every block the ring hands out, giving each back once
// flushed, until the ring has none or the sender dies.
func (tw *takeoverWorker) run() {
	defer func() {
		if v := recover(); v != nil && v != errDied {
			panic(v)
		}
	}()
	for b := tw.r.take(); b >= 0; b = tw.r.take() {
		tw.w.forwardBlock(tw.in, b, tw.s)
		tw.s.flush()
		tw.r.release(b)
	}
}

var errDied = fmt.Errorf("worker killed")

// flushSender queues the first output's datagrams and sends them (to
// flushed) every third send, in a call that publishes the rings' progress
// first and confirms it after; at send dieAt it panics, losing what it
// queued, or with dieInCall in the call that would send them, after the
// publish.
type flushSender struct {
	rings        *ringTable
	queued       []string
	flushed      []string
	sends, dieAt int
	dieInCall    bool
	outputs      map[*output]int
}

func (s *flushSender) send(o *output, _ int, pkt []byte, off, n int, _ []byte) {
	if s.outputs == nil {
		s.outputs = map[*output]int{}
	}
	if _, ok := s.outputs[o]; !ok {
		s.outputs[o] = len(s.outputs)
	}
	s.sends++
	if s.sends == s.dieAt && !s.dieInCall {
		panic(errDied)
	}
	if s.outputs[o] == 0 {
		s.queued = append(s.queued, string(pkt[off:off+n]))
	}
	if s.sends%3 == 0 || s.sends == s.dieAt {
		s.flush()
	}
}

func (s *flushSender) flush() {
	s.rings.publish()
	if s.dieInCall && s.sends == s.dieAt {
		panic(errDied)
	}
	s.flushed = append(s.flushed, s.queued...)
	s.queued = s.queued[:0]
	s.rings.confirm()
}
