package worker

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testFrameSize is the frame size of the frame rings these tests build.
const testFrameSize = 256

// fakeFrame lays out a TPACKET_V2 frame the way the kernel fills one: the
// frame header, the virtio_net_hdr right before tp_mac, the packet's
// bytes. n is the packet's original length (0: len(data)); status holds
// tp_status bits besides TP_STATUS_USER; mark is what a worker wrote into
// the padding, sec when the kernel stamped it.
type fakeFrameSpec struct {
	user      bool
	data      string
	n         int
	status    uint32
	mark, sec uint32
	tci       uint16
}

func fakeFrame(fr []byte, f fakeFrameSpec) {
	clear(fr)
	const mac = 64
	n := f.n
	if n == 0 {
		n = len(f.data)
	}
	st := f.status
	if f.user {
		st |= tpStatusUser
	}
	binary.LittleEndian.PutUint32(fr[frStatusOff:], st)
	binary.LittleEndian.PutUint32(fr[frLenOff:], uint32(n))
	binary.LittleEndian.PutUint32(fr[frSnaplenOff:], uint32(len(f.data)))
	binary.LittleEndian.PutUint16(fr[frMacOff:], mac)
	binary.LittleEndian.PutUint32(fr[frSecOff:], f.sec)
	binary.LittleEndian.PutUint16(fr[frVLANTCIOff:], f.tci)
	binary.LittleEndian.PutUint32(fr[frMarkOff:], f.mark)
	copy(fr[mac:], f.data)
}

func fakeFrameRing(frames ...fakeFrameSpec) *rxRing {
	mem := make([]byte, len(frames)*testFrameSize)
	r := newFrameRing(mem, len(frames), testFrameSize)
	for i, f := range frames {
		fakeFrame(r.block(i), f)
	}
	return r
}

// TestFrameIter checks what forward gets from a frame: the packet from
// its virtio_net_hdr, its original length, its metadata, and whether it
// is whole on the socket (TP_STATUS_COPY); a frame whose header does not
// add up is bad.
func TestFrameIter(t *testing.T) {
	type got struct {
		Data   string
		N      int
		Meta   rxMeta
		Copied bool
		OK     bool
		Bad    bool
	}
	for _, tc := range []struct {
		name string
		f    fakeFrameSpec
		edit func(fr []byte)
		want got
	}{
		{"packet", fakeFrameSpec{user: true, data: "hello"}, nil,
			got{Data: "hello", N: vnetHdrLen + 5, OK: true}},
		{"checksum valid, VLAN tag", fakeFrameSpec{user: true, data: "x", status: tpStatusCsumValid | tpStatusVLANValid, tci: 7}, nil,
			got{Data: "x", N: vnetHdrLen + 1, Meta: rxCsumValid | rxTagged, OK: true}},
		{"larger than the frame: whole on the socket", fakeFrameSpec{user: true, data: "start", n: 9000, status: tpStatusCopy}, nil,
			got{Data: "start", N: vnetHdrLen + 9000, Copied: true, OK: true}},
		{"truncated without a copy", fakeFrameSpec{user: true, data: "start", n: 9000}, nil,
			got{Data: "start", N: vnetHdrLen + 9000, OK: true}},
		{"snaplen past the frame", fakeFrameSpec{user: true, data: "x"}, func(fr []byte) {
			binary.LittleEndian.PutUint32(fr[frSnaplenOff:], testFrameSize)
		}, got{Bad: true}},
		{"mac inside the header", fakeFrameSpec{user: true, data: "x"}, func(fr []byte) {
			binary.LittleEndian.PutUint16(fr[frMacOff:], frHdrLen)
		}, got{Bad: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fakeFrameRing(tc.f)
			if tc.edit != nil {
				tc.edit(r.block(0))
			}
			var it blockIter
			it.startFrame(r.block(0))
			pkt, n, ok, bad := it.next()
			g := got{N: n, OK: ok, Bad: bad}
			if ok {
				g.Data, g.Meta, g.Copied = string(pkt[vnetHdrLen:]), it.meta, it.copied
			}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("next (-want +got):\n%s", diff)
			}
			if _, _, ok, _ := it.next(); ok {
				t.Error("a frame gave a second packet")
			}
		})
	}
}

// TestFrameAdopt checks what a worker finds in a frame ring an earlier
// one left: the frames to relay, in ring order; the handled ones given
// back; and where it reads on.
func TestFrameAdopt(t *testing.T) {
	k := func(mark uint32) fakeFrameSpec { return fakeFrameSpec{mark: mark} }                     // the kernel's
	h := func(mark uint32) fakeFrameSpec { return fakeFrameSpec{user: true, mark: mark} }         // handled, not given back
	u := func(sec uint32) fakeFrameSpec { return fakeFrameSpec{user: true, data: "p", sec: sec} } // not handled
	for _, tc := range []struct {
		name     string
		frames   []fakeFrameSpec
		backlog  []int
		next     int
		returned int
	}{
		{"fresh ring", []fakeFrameSpec{k(0), k(0), k(0), k(0)}, []int{}, 0, 0},
		{"never handled: from frame 0", []fakeFrameSpec{u(1), u(2), k(0), k(0)}, []int{0, 1}, 2, 0},
		{"all handled and given back", []fakeFrameSpec{k(5), k(6), k(3), k(4)}, []int{}, 2, 0},
		{"handled, some not given back, some waiting", []fakeFrameSpec{k(5), h(6), h(7), u(9), u(9), k(4)}, []int{3, 4}, 5, 2},
		{"waiting across the end of the ring", []fakeFrameSpec{u(2), k(0), k(7), k(8), u(1)}, []int{4, 0}, 1, 0},
		{"full: oldest first by the kernel's stamp", []fakeFrameSpec{u(5), u(6), u(3), u(4)}, []int{2, 3, 0, 1}, 2, 0},
		{"full but one handled frame", []fakeFrameSpec{u(5), u(6), h(9), u(4)}, []int{3, 0, 1}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fakeFrameRing(tc.frames...)
			a := r.adopt()
			if diff := cmp.Diff(tc.backlog, append([]int{}, r.backlog...)); diff != "" {
				t.Errorf("backlog (-want +got):\n%s", diff)
			}
			if r.next != tc.next || a.Returned != tc.returned || a.Backlog != len(tc.backlog) {
				t.Errorf("next %d, %+v; want next %d, %d returned", r.next, a, tc.next, tc.returned)
			}
		})
	}
}

// TestFramePublishMarks checks that publish marks each handled frame with
// a growing mark, leaves the frame being forwarded for the next publish,
// and that a worker adopting the ring then gives back exactly the frames
// handled and relays the rest.
func TestFramePublishMarks(t *testing.T) {
	u := fakeFrameSpec{user: true, data: "p"}
	r := fakeFrameRing(u, u, u, fakeFrameSpec{})
	for range 3 {
		f := r.take()
		r.done[f] = 1
	}
	r.cur = 2
	r.done[2] = 0 // taken, not started
	r.publish()
	marks := []uint32{}
	for f := range 4 {
		marks = append(marks, *r.frameMark(f))
	}
	if diff := cmp.Diff([]uint32{1, 2, 0, 0}, marks); diff != "" {
		t.Errorf("marks (-want +got):\n%s", diff)
	}
	next := newFrameRing(r.mem, 4, testFrameSize)
	a := next.adopt()
	// Frames 0 and 1 were handled and never given back: their sends'
	// completions were not seen, so whether they left is unknown.
	if diff := cmp.Diff([]int{2}, next.backlog); diff != "" || a.Returned != 2 || a.Unconfirmed != 2 || next.lastMark != 2 {
		t.Errorf("adopted %+v, backlog %v, last mark %d; want frames 0, 1 returned and unconfirmed, 2 to relay, last mark 2 (-want +got):\n%s",
			a, next.backlog, next.lastMark, diff)
	}
}

// TestRingUsed counts the frames that are the worker's: those it holds and
// those waiting from where it reads next, without the ones the kernel has.
func TestRingUsed(t *testing.T) {
	u := fakeFrameSpec{user: true, data: "p"}
	r := fakeFrameRing(u, u, u, fakeFrameSpec{}, fakeFrameSpec{})
	if got := r.used(); got != 3 {
		t.Errorf("before any take: used %d, want 3", got)
	}
	f := r.take()
	r.hold(f) // a send in flight
	r.release(f)
	if got := r.used(); got != 3 {
		t.Errorf("one held, two waiting: used %d, want 3", got)
	}
	r.release(f)
	if got := r.used(); got != 2 {
		t.Errorf("given back, two waiting: used %d, want 2", got)
	}
}
