package worker

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// Layout of a TPACKET_V3 ring (linux/if_packet.h): each block starts with
// struct tpacket_block_desc, whose tpacket_hdr_v1 holds the block's owner
// (block_status), its packet count and the offset of the first packet;
// each packet starts with struct tpacket3_hdr, which gives the offset of
// the next one, the bytes captured (snaplen) and the packet's length, the
// packet's status, where the link-layer header starts (tp_mac), and the
// VLAN tag the kernel took out of the frame (hv1.tp_vlan_tci).
// PACKET_VNET_HDR puts the struct virtio_net_hdr right before tp_mac.
const (
	blockPrivOff    = 4
	blockStatusOff  = 8
	blockNumPktsOff = 12
	blockFirstOff   = 16
	blockSeqOff     = 24
	blockHdrLen     = 48
	pktNextOff      = 0
	pktSnaplenOff   = 12
	pktLenOff       = 16
	pktStatusOff    = 20
	pktMacOff       = 24
	pktVLANTCIOff   = 32
	pktHdrLen       = 48

	tpStatusKernel = 0
	tpStatusUser   = 1
	// tpStatusCopy: a frame ring's packet was larger than its frame; the
	// frame holds its start, the socket's receive queue all of it.
	tpStatusCopy = 1 << 1

	// Per-packet tp_status bits (tpacket_rcv, net/packet/af_packet.c).
	tpStatusCsumNotReady = 1 << 3 // CHECKSUM_PARTIAL
	tpStatusVLANValid    = 1 << 4 // tp_vlan_tci holds a tag
	tpStatusCsumValid    = 1 << 7 // checksum verified, or CHECKSUM_UNNECESSARY

	vlanIDMask = 0x0fff // the VLAN ID in a tag control information word
)

// Layout of a TPACKET_V2 frame (struct tpacket2_hdr): the frame's status
// (also its owner), the packet's length and the bytes captured, where the
// link-layer header starts, the VLAN tag the kernel took out of the frame,
// and four bytes of padding the kernel zeroes each time it fills the frame,
// where the worker marks a frame it has handled (rxring_takeover.go).
const (
	frStatusOff  = 0
	frLenOff     = 4
	frSnaplenOff = 8
	frMacOff     = 12
	frSecOff     = 16
	frVLANTCIOff = 24
	frMarkOff    = 28
	frHdrLen     = 32
)

// ringRounds bounds the blocks taken from one ring per wake-up, so that a
// flooded input cannot starve the others or the commands; frameRounds
// does the same for the frames of a frame ring.
const (
	ringRounds  = 16
	frameRounds = 1024
)

// rounds returns how many blocks (frames) of r one wake-up takes at most.
func (r *rxRing) rounds() int {
	if r.frames {
		return frameRounds
	}
	return ringRounds
}

// ringBufBit marks a buffer id (pending.buf) that names a block of a
// receive ring rather than a slot of the backend's pool: ringBufBit |
// ring id << 16 | block.
const ringBufBit = 1 << 31

// rxRing is one input socket's receive ring, mapped into the worker: a
// TPACKET_V3 block ring, or a TPACKET_V2 frame ring, where everything said
// of blocks here holds for frames, a frame being a block of one packet.
// For a block ring: The kernel fills blocks in ring order and hands each over
// (TP_STATUS_USER) when it is full or its retire timeout expired; the
// worker reads them in the same order and gives a block back
// (TP_STATUS_KERNEL) once every send that points into it has completed.
// Sends never wait (MSG_DONTWAIT: a full socket fails the send at once,
// counted against its output), so a block is held only until the sends of
// its dispatch are submitted: no output can keep it.
// When the block the kernel wants next is still the worker's, the kernel
// drops packets (PACKET_STATISTICS: tp_drops, tp_freeze_q_cnt).
//
// The ring belongs to the socket, which the supervisor keeps for the
// worker's slot across worker lives: a worker that maps a ring first takes
// over what an earlier one left (adopt, rxring_takeover.go), and records
// as it goes how far it got with each block (publish).
type rxRing struct {
	id        int    // in the worker's ringTable
	ino       uint64 // the socket's inode: the same socket opened again finds its mapping
	mem       []byte
	blockSize int  // the frame size in a frame ring
	frames    bool // a TPACKET_V2 frame ring
	statusOff int  // of the block's (frame's) status in it
	next      int  // the next block to read
	// refs is per block: 1 while its packets are being dispatched, plus
	// one per send in flight that points into it; 0 while the kernel
	// owns it.
	refs   []int32
	held   int  // blocks with refs > 0
	closed bool // the worker closed its socket: the ring is unmapped with its last block

	// Progress, per block, for the next owner of the ring: the seq_num
	// the block had when taken, and how many of its packets are handled
	// (forwarded, their sends queued); see rxring_takeover.go.
	seq  []uint64
	done []uint32
	// backlog is the blocks an earlier owner left, taken before next,
	// oldest first.
	backlog []int
	// unpublished lists the blocks whose progress changed since the
	// last publish (marked says which); cur is the block being
	// forwarded, -1 between blocks.
	unpublished []int
	marked      []bool
	cur         int
	// unconfirmed lists the blocks published since the last confirm
	// (confirming says which).
	unconfirmed []int
	confirming  []bool
	// lastMark is the last mark written into a handled frame of a frame
	// ring (rxring_takeover.go).
	lastMark uint32
	// testAfterLook, when set (by tests), runs after adopt's first look
	// at each block: where the kernel moves on during a takeover.
	testAfterLook func(b int)
}

func newRxRing(mem []byte, blocks, blockSize int) *rxRing {
	return &rxRing{mem: mem, blockSize: blockSize, statusOff: blockStatusOff, refs: make([]int32, blocks), cur: -1,
		seq: make([]uint64, blocks), done: make([]uint32, blocks),
		unpublished: make([]int, 0, blocks), unconfirmed: make([]int, 0, blocks), marked: make([]bool, blocks), confirming: make([]bool, blocks)}
}

// newFrameRing returns the state of a frame ring of n frames of frameSize
// bytes mapped at mem.
func newFrameRing(mem []byte, n, frameSize int) *rxRing {
	r := newRxRing(mem, n, frameSize)
	r.frames, r.statusOff = true, frStatusOff
	return r
}

func (r *rxRing) status(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[b*r.blockSize+r.statusOff]))
}

// take returns the next block to forward, held once for its dispatch, or
// -1 when there is none: first the backlog an earlier owner left, then
// the blocks the kernel hands over, in ring order. Its first done[b]
// packets are already handled.
func (r *rxRing) take() int {
	var b int
	if len(r.backlog) > 0 {
		b = r.backlog[0]
		r.backlog = r.backlog[1:]
	} else {
		b = r.next
		if r.refs[b] != 0 || atomic.LoadUint32(r.status(b))&tpStatusUser == 0 {
			return -1
		}
		r.next = (b + 1) % len(r.refs)
		r.done[b] = 0
		if !r.frames {
			r.seq[b] = r.blockSeq(b)
		}
	}
	r.refs[b] = 1
	r.held++
	r.mark(b)
	return b
}

// used returns how many blocks (frames) are the worker's: held (taken and
// not given back yet), or handed over and waiting, which the kernel fills
// in ring order from next on. It reads only the waiting ones, not the
// whole ring: a frame ring spans thousands of pages.
func (r *rxRing) used() int {
	n := r.held + len(r.backlog)
	for i, b := 0, r.next; i < len(r.refs) && r.refs[b] == 0; i, b = i+1, (b+1)%len(r.refs) {
		if atomic.LoadUint32(r.status(b))&tpStatusUser == 0 {
			break
		}
		n++
	}
	return n
}

// hold counts one more send pointing into block b.
func (r *rxRing) hold(b int) { r.refs[b]++ }

// release drops one hold on block b and gives the block back to the
// kernel with the last. It reports whether the ring is closed and no
// longer holds any block, so it can be unmapped. A closed ring gives its
// blocks back too: the supervisor keeps the socket, and the mapping stays
// valid until the ring is unmapped.
func (r *rxRing) release(b int) (done bool) {
	if r.refs[b]--; r.refs[b] > 0 {
		return false
	}
	r.held--
	atomic.StoreUint32(r.status(b), tpStatusKernel)
	return r.closed && r.held == 0
}

// block returns the memory of block b.
func (r *rxRing) block(b int) []byte {
	return r.mem[b*r.blockSize : (b+1)*r.blockSize : (b+1)*r.blockSize]
}

// blockIter walks the packets of one block, or the one of a frame.
type blockIter struct {
	blk       []byte
	off, left int
	frame     bool
	// meta is what the packet header of the packet next returned last
	// says about it; copied that the packet was larger than its frame and
	// is whole on the socket's receive queue (TP_STATUS_COPY).
	meta   rxMeta
	copied bool
}

// start begins the walk of blk, a block the kernel handed over.
func (it *blockIter) start(blk []byte) {
	it.blk, it.frame = blk, false
	it.left = int(binary.LittleEndian.Uint32(blk[blockNumPktsOff:]))
	it.off = int(binary.LittleEndian.Uint32(blk[blockFirstOff:]))
}

// startFrame begins the walk of fr, a frame the kernel handed over.
func (it *blockIter) startFrame(fr []byte) {
	it.blk, it.frame, it.left, it.off = fr, true, 1, 0
}

// nextFrame is next for a frame.
func (it *blockIter) nextFrame() (pkt []byte, n int, ok, bad bool) {
	it.left = 0
	fr := it.blk
	if len(fr) < frHdrLen {
		return nil, 0, false, true
	}
	status := binary.LittleEndian.Uint32(fr[frStatusOff:])
	length := int(binary.LittleEndian.Uint32(fr[frLenOff:]))
	snap := int(binary.LittleEndian.Uint32(fr[frSnaplenOff:]))
	mac := int(binary.LittleEndian.Uint16(fr[frMacOff:]))
	start := mac - vnetHdrLen
	if start < frHdrLen || mac+snap > len(fr) || length < snap {
		return nil, 0, false, true
	}
	it.meta = ringMeta(status, uint32(binary.LittleEndian.Uint16(fr[frVLANTCIOff:])))
	it.copied = status&tpStatusCopy != 0
	return fr[start : mac+snap : mac+snap], vnetHdrLen + length, true, false
}

// skip passes over the first n packets, which an earlier owner of the ring
// handled. It reports false when the block ends before.
func (it *blockIter) skip(n int) bool {
	for range n {
		if _, _, ok, _ := it.next(); !ok {
			return false
		}
	}
	return true
}

// next returns the next packet as forward takes it: pkt from its
// virtio_net_hdr to the end of the bytes captured, and n its length had
// it been captured whole (more than len(pkt) when the block truncated it);
// it.meta is set to what the packet's header says. ok is false at the end
// of the block, and for the rest of a block whose headers do not add up,
// which bad reports.
func (it *blockIter) next() (pkt []byte, n int, ok, bad bool) {
	if it.left == 0 {
		return nil, 0, false, false
	}
	if it.frame {
		return it.nextFrame()
	}
	it.left--
	off, blk := it.off, it.blk
	if off < 0 || off+pktHdrLen > len(blk) {
		it.left = 0
		return nil, 0, false, true
	}
	snap := int(binary.LittleEndian.Uint32(blk[off+pktSnaplenOff:]))
	length := int(binary.LittleEndian.Uint32(blk[off+pktLenOff:]))
	mac := off + int(binary.LittleEndian.Uint16(blk[off+pktMacOff:]))
	start := mac - vnetHdrLen
	if start < off+pktHdrLen || mac+snap > len(blk) || length < snap {
		it.left = 0
		return nil, 0, false, true
	}
	it.meta = ringMeta(binary.LittleEndian.Uint32(blk[off+pktStatusOff:]), binary.LittleEndian.Uint32(blk[off+pktVLANTCIOff:]))
	if next := int(binary.LittleEndian.Uint32(blk[off+pktNextOff:])); next >= pktHdrLen {
		it.off = off + next
	} else {
		it.off = -1 // the last packet (0): a further one is bad
	}
	return blk[start : mac+snap : mac+snap], vnetHdrLen + length, true, false
}

// ringMeta turns a packet's tp_status and tp_vlan_tci into rxMeta. The
// kernel sets TP_STATUS_VLAN_VALID for every tag it moved out of the frame
// (at the latest in __netif_receive_skb_core, before packet sockets see
// the frame, whatever the NIC's VLAN offload); a tag with VLAN ID 0 is a
// priority tag, no VLAN.
func ringMeta(status, tci uint32) rxMeta {
	var m rxMeta
	if status&tpStatusCsumNotReady != 0 {
		m |= rxCsumPartial
	}
	if status&tpStatusCsumValid != 0 {
		m |= rxCsumValid
	}
	if status&tpStatusVLANValid != 0 && tci&vlanIDMask != 0 {
		m |= rxTagged
	}
	return m
}

// ringTable names the worker's receive rings by small ids, so that a send
// can name the block it points into in a pending's 32-bit buf: 14 bits of
// id (one ring per input interface, freed ids reused; copyBufBit is
// above) and 16 of block or frame (relaysock.MaxRingFrames).
type ringTable struct {
	rings []*rxRing // by id; nil when free
}

// publish records, in every ring, how far the worker got with the blocks
// it took since the last call. The backends call it right before each
// system call that hands sends to the kernel (an io_uring submit, a
// sendmmsg), so that what a ring says is handled has been sent, or is in
// the call being made, and what it does not say has not: a worker killed
// at any point leaves its successor exactly the packets it never sent, but
// for those of the one call it was about to make or making when killed,
// which the successor counts (restart_unconfirmed).
func (t *ringTable) publish() {
	for _, r := range t.rings {
		if r != nil && len(r.unpublished) > 0 {
			r.publish()
		}
	}
}

// confirm records in every ring that the kernel has taken the sends of
// what was published (rxRing.confirm); the backends call it once nothing
// of it is left queued, prepared or to be sent again.
func (t *ringTable) confirm() {
	for _, r := range t.rings {
		if r != nil && len(r.unconfirmed) > 0 {
			r.confirm()
		}
	}
}

// hasFrames reports whether any ring is a frame ring.
func (t *ringTable) hasFrames() bool {
	for _, r := range t.rings {
		if r != nil && r.frames {
			return true
		}
	}
	return false
}

// lookupRing returns the ring of the socket with inode ino, nil if none:
// a socket the worker closed while sends still pointed into its ring and
// now opens again.
func (t *ringTable) lookupRing(ino uint64) *rxRing {
	for _, r := range t.rings {
		if r != nil && r.ino == ino {
			return r
		}
	}
	return nil
}

// add gives r an id.
func (t *ringTable) add(r *rxRing) {
	for i, x := range t.rings {
		if x == nil {
			r.id, t.rings[i] = i, r
			return
		}
	}
	r.id = len(t.rings)
	t.rings = append(t.rings, r)
}

// bufID returns the buffer id of block b of r.
func bufID(r *rxRing, b int) uint32 { return ringBufBit | uint32(r.id)<<16 | uint32(b) }

// lookup returns the ring and block a buffer id names.
func (t *ringTable) lookup(id uint32) (*rxRing, int) {
	return t.rings[id&^ringBufBit>>16], int(id & 0xffff)
}

// hold counts one more send pointing into the block id names.
func (t *ringTable) hold(id uint32) {
	r, b := t.lookup(id)
	r.hold(b)
}

// release drops a hold on the block id names; the last release of a closed
// ring frees its id and returns the ring, for the caller to unmap.
func (t *ringTable) release(id uint32) *rxRing {
	r, b := t.lookup(id)
	if !r.release(b) {
		return nil
	}
	t.rings[r.id] = nil
	return r
}

// close marks r's socket closed. It returns true when r holds no block
// and may be unmapped now; otherwise the last release returns it.
func (t *ringTable) close(r *rxRing) bool {
	r.closed = true
	if r.held > 0 {
		return false
	}
	t.rings[r.id] = nil
	return true
}
