package worker

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testBlockSize is the block size of the rings these tests build by hand.
const testBlockSize = 4096

// fakeBlock lays out a TPACKET_V3 block the way the kernel fills one: the
// block header, then each packet's tpacket3_hdr, its virtio_net_hdr right
// before tp_mac, and its bytes. lens gives each packet's original length
// when it differs from what was captured.
type fakePkt struct {
	data []byte
	len  int // 0: len(data)
}

func fakeBlock(blk []byte, status uint32, pkts ...fakePkt) {
	clear(blk)
	binary.LittleEndian.PutUint32(blk[blockStatusOff:], status)
	binary.LittleEndian.PutUint32(blk[blockNumPktsOff:], uint32(len(pkts)))
	first := 48
	binary.LittleEndian.PutUint32(blk[blockFirstOff:], uint32(first))
	off := first
	for i, p := range pkts {
		const mac = 80 // tp_mac: header, room for the vnet header, aligned
		n := p.len
		if n == 0 {
			n = len(p.data)
		}
		binary.LittleEndian.PutUint32(blk[off+pktSnaplenOff:], uint32(len(p.data)))
		binary.LittleEndian.PutUint32(blk[off+pktLenOff:], uint32(n))
		binary.LittleEndian.PutUint16(blk[off+pktMacOff:], mac)
		copy(blk[off+mac-vnetHdrLen:], make([]byte, vnetHdrLen))
		copy(blk[off+mac:], p.data)
		next := (mac + len(p.data) + 15) &^ 15
		if i < len(pkts)-1 {
			binary.LittleEndian.PutUint32(blk[off+pktNextOff:], uint32(next))
		}
		off += next
	}
}

type walked struct {
	Data string
	N    int
}

func walk(blk []byte) (got []walked, bad bool) {
	var it blockIter
	it.start(blk)
	for {
		pkt, n, ok, b := it.next()
		if !ok {
			return got, b
		}
		got = append(got, walked{string(pkt[vnetHdrLen:]), n})
	}
}

func TestBlockIter(t *testing.T) {
	blk := make([]byte, testBlockSize)
	fakeBlock(blk, tpStatusUser, fakePkt{data: []byte("first")}, fakePkt{data: []byte("second, longer")},
		fakePkt{data: []byte("cut"), len: 9000})
	got, bad := walk(blk)
	want := []walked{
		{"first", vnetHdrLen + 5},
		{"second, longer", vnetHdrLen + 14},
		{"cut", vnetHdrLen + 9000}, // truncated: forward counts it malformed
	}
	if diff := cmp.Diff(want, got); diff != "" || bad {
		t.Errorf("packets (-want +got):\n%s\nbad = %v", diff, bad)
	}
}

// TestBlockIterBadHeaders checks that headers pointing outside the block
// end the walk, reported, instead of reading out of bounds.
func TestBlockIterBadHeaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(blk []byte)
		want  int // packets walked before the bad one
	}{
		{"first packet past the end", func(blk []byte) {
			binary.LittleEndian.PutUint32(blk[blockFirstOff:], testBlockSize-8)
		}, 0},
		{"next offset past the end", func(blk []byte) {
			binary.LittleEndian.PutUint32(blk[48+pktNextOff:], testBlockSize)
		}, 1},
		{"snaplen past the end", func(blk []byte) {
			binary.LittleEndian.PutUint32(blk[48+pktSnaplenOff:], testBlockSize)
		}, 0},
		{"mac inside the packet header", func(blk []byte) {
			binary.LittleEndian.PutUint16(blk[48+pktMacOff:], pktHdrLen)
		}, 0},
		{"more packets counted than there are", func(blk []byte) {
			binary.LittleEndian.PutUint32(blk[blockNumPktsOff:], 3)
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blk := make([]byte, testBlockSize)
			fakeBlock(blk, tpStatusUser, fakePkt{data: []byte("one")}, fakePkt{data: []byte("two")})
			tc.spoil(blk)
			got, bad := walk(blk)
			if len(got) != tc.want || !bad {
				t.Errorf("walked %d packets, bad = %v; want %d, true", len(got), bad, tc.want)
			}
		})
	}
}

// TestRingOwnership follows blocks between kernel and worker: taken in
// ring order only once handed over, given back with the last hold, and
// never given back once the socket is closed.
func TestRingOwnership(t *testing.T) {
	mem := make([]byte, 3*testBlockSize)
	r := newRxRing(mem, 3, testBlockSize)
	var tab ringTable
	tab.add(r)
	status := func(b int) uint32 { return *r.status(b) }

	if b := r.take(); b != -1 {
		t.Fatalf("took block %d the kernel still owns", b)
	}
	fakeBlock(r.block(0), tpStatusUser)
	fakeBlock(r.block(1), tpStatusUser)
	if b := r.take(); b != 0 {
		t.Fatalf("took block %d, want 0", b)
	}
	tab.hold(bufID(r, 0)) // a send in flight
	if rel := tab.release(bufID(r, 0)); rel != nil || status(0) != tpStatusUser {
		t.Fatalf("block 0 given back while a send holds it: status %d", status(0))
	}
	if b := r.take(); b != 1 {
		t.Fatalf("took block %d, want 1", b)
	}
	tab.release(bufID(r, 0))
	if status(0) != tpStatusKernel {
		t.Errorf("block 0 not given back after its last send: status %d", status(0))
	}
	if b := r.take(); b != -1 {
		t.Errorf("took block %d, the kernel owns block 2", b)
	}

	// Closing while block 1 is held: freed only with its last release.
	if tab.close(r) {
		t.Fatal("close freed a ring that still holds a block")
	}
	if got := tab.release(bufID(r, 1)); got != r {
		t.Fatalf("last release returned %v, want the ring to unmap", got)
	}
	if status(1) != tpStatusUser {
		t.Error("a block of a closed ring was written")
	}
	if tab.rings[0] != nil {
		t.Error("the closed ring keeps its id")
	}
	r2 := newRxRing(make([]byte, testBlockSize), 1, testBlockSize)
	tab.add(r2)
	if r2.id != 0 {
		t.Errorf("new ring got id %d, want the freed 0", r2.id)
	}
}

// BenchmarkForwardBlock measures dispatch from a ring block: 100 packets
// of 1,024 bytes, each matching a rule with two outputs.
func BenchmarkForwardBlock(b *testing.B) {
	w, in := benchRingWorker(b)
	s := &countSender{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w.forwardBlock(in, 0, s)
	}
	b.StopTimer()
	if s.n != 2*100*b.N {
		b.Fatalf("%d sends, want %d", s.n, 2*100*b.N)
	}
}

// countSender completes every send at once and counts them.
type countSender struct{ n int }

func (s *countSender) send(*output, int, []byte, int, int, []byte) { s.n++ }

// benchRingWorker returns a worker with benchSetup's 1,000 rules and an
// input on ifindex 2 whose ring's block 0 holds 100 matching packets.
func benchRingWorker(b *testing.B) (*worker, *input) {
	d, pkt := benchSetup(b)
	w := &worker{d: *d}
	r := newRxRing(make([]byte, RingBlockSize), 1, RingBlockSize)
	w.rings.add(r)
	pkts := make([]fakePkt, 100)
	for i := range pkts {
		pkts[i] = fakePkt{data: pkt[vnetHdrLen:]}
	}
	fakeBlock(r.block(0), tpStatusUser, pkts...)
	return w, &input{ifindex: 2, ring: r}
}
