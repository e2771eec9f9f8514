package worker

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// testBlockSize is the block size of the rings these tests build by hand.
const testBlockSize = 4096

// fakeFirst is where the first packet of a block starts: after the block
// header and the private area, as relaysock sets rings up.
const fakeFirst = blockHdrLen + relaysock.RingPrivSize

// fakeBlock lays out a TPACKET_V3 block the way the kernel fills one: the
// block header, then each packet's tpacket3_hdr, its virtio_net_hdr right
// before tp_mac, and its bytes. lens gives each packet's original length
// when it differs from what was captured.
type fakePkt struct {
	data []byte
	len  int // 0: len(data)
	// status and tci are the packet's tp_status bits (besides
	// TP_STATUS_USER) and tp_vlan_tci.
	status, tci uint32
}

func fakeBlock(blk []byte, status uint32, pkts ...fakePkt) {
	clear(blk)
	binary.LittleEndian.PutUint32(blk[blockStatusOff:], status)
	binary.LittleEndian.PutUint32(blk[blockNumPktsOff:], uint32(len(pkts)))
	binary.LittleEndian.PutUint32(blk[blockPrivOff:], blockHdrLen)
	first := fakeFirst
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
		binary.LittleEndian.PutUint32(blk[off+pktStatusOff:], tpStatusUser|p.status)
		binary.LittleEndian.PutUint32(blk[off+pktVLANTCIOff:], p.tci)
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
	Meta rxMeta
}

func walk(blk []byte) (got []walked, bad bool) {
	var it blockIter
	it.start(blk)
	for {
		pkt, n, ok, b := it.next()
		if !ok {
			return got, b
		}
		got = append(got, walked{string(pkt[vnetHdrLen:]), n, it.meta})
	}
}

func TestBlockIter(t *testing.T) {
	blk := make([]byte, testBlockSize)
	fakeBlock(blk, tpStatusUser, fakePkt{data: []byte("first")},
		fakePkt{data: []byte("second, longer"), status: tpStatusVLANValid | tpStatusCsumValid, tci: 100},
		fakePkt{data: []byte("cut"), len: 9000})
	got, bad := walk(blk)
	want := []walked{
		{"first", vnetHdrLen + 5, 0},
		{"second, longer", vnetHdrLen + 14, rxTagged | rxCsumValid},
		{"cut", vnetHdrLen + 9000, 0}, // truncated: forward counts it malformed
	}
	if diff := cmp.Diff(want, got); diff != "" || bad {
		t.Errorf("packets (-want +got):\n%s\nbad = %v", diff, bad)
	}
}

// TestRingMeta checks what the dispatcher learns from a packet's
// tp_status and tp_vlan_tci.
func TestRingMeta(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status, tci uint32
		want        rxMeta
	}{
		{"untagged, checksum unverified", tpStatusUser, 0, 0},
		{"checksum verified", tpStatusUser | tpStatusCsumValid, 0, rxCsumValid},
		{"checksum partial (local sender)", tpStatusUser | tpStatusCsumNotReady, 0, rxCsumPartial},
		{"VLAN 100", tpStatusUser | tpStatusVLANValid, 100, rxTagged},
		{"VLAN 4095 with priority bits", tpStatusUser | tpStatusVLANValid, 0xefff, rxTagged},
		{"priority tag: VLAN ID 0, PCP 5", tpStatusUser | tpStatusVLANValid, 0xa000, 0},
		{"stale TCI without VLAN_VALID", tpStatusUser, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ringMeta(tc.status, tc.tci); got != tc.want {
				t.Errorf("ringMeta(%#x, %#x) = %#x, want %#x", tc.status, tc.tci, got, tc.want)
			}
		})
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
			binary.LittleEndian.PutUint32(blk[fakeFirst+pktNextOff:], testBlockSize)
		}, 1},
		{"snaplen past the end", func(blk []byte) {
			binary.LittleEndian.PutUint32(blk[fakeFirst+pktSnaplenOff:], testBlockSize)
		}, 0},
		{"mac inside the packet header", func(blk []byte) {
			binary.LittleEndian.PutUint16(blk[fakeFirst+pktMacOff:], pktHdrLen)
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
// ring order only once handed over, and given back with the last hold,
// also after the worker closed its socket (the supervisor keeps the
// socket, and the ring with it).
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
	if status(1) != tpStatusKernel {
		t.Errorf("a block of a closed ring not given back after its last send: status %d", status(1))
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

// BenchmarkForwardBlock measures dispatch from a ring block: 100 packets,
// each matching a rule with two outputs, whose UDP checksums are verified
// (csum=verify: the kernel marks them neither valid nor partial, as
// packets from a NIC without receive checksum offload) or not
// (csum=valid: TP_STATUS_CSUM_VALID). ns/packet is wall time per packet;
// cpu-ns/packet is the benchmark thread's CPU time, which waiting for a
// core on a busy machine does not inflate.
func BenchmarkForwardBlock(b *testing.B) {
	for _, size := range benchSizes {
		for _, csum := range []string{"verify", "valid"} {
			b.Run(fmt.Sprintf("payload=%d/csum=%s", size, csum), func(b *testing.B) {
				var status uint32
				if csum == "valid" {
					status = tpStatusCsumValid
				}
				w, in := benchRingWorker(b, size, status)
				s := &countSender{}
				b.ReportAllocs()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu := threadCPU()
				b.ResetTimer()
				for range b.N {
					w.forwardBlock(in, 0, s)
				}
				b.StopTimer()
				cpu = threadCPU() - cpu
				if s.n != 2*100*b.N {
					b.Fatalf("%d sends, want %d", s.n, 2*100*b.N)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(100*b.N), "ns/packet")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(100*b.N), "cpu-ns/packet")
			})
		}
	}
}

// countSender completes every send at once and counts them.
type countSender struct{ n int }

func (s *countSender) send(*output, int, []byte, int, int, []byte) { s.n++ }

// benchRingWorker returns a worker with benchSetup's 1,000 rules and an
// input on ifindex 2 whose ring's block 0 holds 100 matching packets of
// size bytes of payload, each with the tp_status bits status.
func benchRingWorker(b *testing.B, size int, status uint32) (*worker, *input) {
	d, pkt := benchSetup(b, size)
	w := &worker{d: *d}
	r := newRxRing(make([]byte, RingBlockSize), 1, RingBlockSize)
	w.rings.add(r)
	pkts := make([]fakePkt, 100)
	for i := range pkts {
		pkts[i] = fakePkt{data: pkt[vnetHdrLen:], status: status}
	}
	fakeBlock(r.block(0), tpStatusUser, pkts...)
	return w, &input{ifindex: 2, ring: r}
}
