package worker

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// Ring takeover: one ring, several owners in turn.
//
// The supervisor keeps each slot's input socket, and so its receive ring,
// across the worker lives of the slot (docs/architecture.md, "Worker
// restarts"). A worker that dies or hangs leaves the ring as it was: the
// blocks it had not given back are still the user's (TP_STATUS_USER) and
// the kernel, once it reaches one of them, freezes and drops. The next
// worker of the slot maps the same ring and must relay what the previous
// one left, in order and once, before it reads on where the kernel hands
// over next. What the kernel keeps in a TPACKET_V3 block header
// (net/packet/af_packet.c) tells enough:
//
//   - seq_num: prb_open_block stamps every block it opens for filling with
//     the next number of a counter that starts at 1 when the ring is set up,
//     and blocks are opened in ring order. So the block with the highest
//     seq_num is the one the kernel opened last: still the kernel's, it is
//     being filled and is the next handed over; already the user's, it is
//     full and the one after it comes next (the kernel is filling it, or is
//     frozen waiting for it). Ordering the user's blocks by seq_num orders
//     them as they were filled, and all of them were filled before the
//     next one.
//   - The private area (tp_sizeof_priv = relaysock.RingPrivSize), which
//     the kernel reserves after the block header and never writes: a
//     worker that takes a block writes there the block's seq_num and how
//     many of its packets it has handled, each time before it hands sends
//     to the kernel (ringTable.publish), and how many of those it has seen
//     through, each time nothing of them is left queued, unsubmitted or
//     refused and due again (ringTable.confirm). A block whose private area carries its current
//     seq_num was taken by an earlier worker, which handled that many of
//     its packets; any other block was never taken in its current fill.
//
// adopt reads all of it once, when a worker maps a ring: the user's blocks
// become the backlog, oldest first, each resumed after the packets an
// earlier worker handled (and given back at once when it handled all), and
// the worker reads on from the kernel's position. The kernel writes the
// block headers only of blocks it owns and a block's status last; adopt
// looks twice, first for the kernel's position, then for the user's blocks
// filled before it, so that a block the kernel hands over during the look
// is either behind the position and in the backlog, or read as the next.
//
// What is not kept: the packets whose sends were in the one system call
// the earlier worker was about to make, or making, when it died. They
// count as handled (a datagram is relayed at most once), but whether they
// left cannot be told: killed before the call they did not, killed in it
// they did (the kernel finishes a submission before the process dies). The
// next worker counts them as restart_unconfirmed, an upper bound of the
// loss: handled and not confirmed in a block ring, handled and not given
// back in a frame ring (a frame goes back as soon as its sends'
// completions are reaped). Without a ring, whatever the worker had received into
// its own buffers is lost uncounted. What the kernel dropped while no
// worker read the ring is in the socket's drop counter, which the next
// reader (the supervisor when the worker dies, or the next worker) counts
// in kernel_drops.

// Layout of a block's private area.
const (
	privSeqOff  = 0  // u64: the block's seq_num when taken
	privDoneOff = 8  // u32: packets of that fill handled
	privConfOff = 12 // u32: of those, packets whose send call has returned
)

// adopted is what adopt found.
type adopted struct {
	// Backlog is how many blocks an earlier owner left to relay, Resumed
	// how many of them it had started, Skipped the packets of those it had
	// handled, and Returned how many blocks it had finished and not given
	// back (given back now). Unconfirmed is how many packets it had
	// handled without knowing whether their sends left (see above).
	Backlog, Resumed, Skipped, Returned, Unconfirmed int
}

// checkPriv returns an error unless the ring's blocks have the private
// area of relaysock.RingPrivSize bytes right after the block header.
// Block 0 tells for all: the kernel opens it when the ring is set up and
// writes the same offsets into every block it opens.
func (r *rxRing) checkPriv() error {
	blk := r.block(0)
	priv := binary.LittleEndian.Uint32(blk[blockPrivOff:])
	first := binary.LittleEndian.Uint32(blk[blockFirstOff:])
	if priv != blockHdrLen || first < priv+relaysock.RingPrivSize {
		return fmt.Errorf("receive ring without a %d-byte private area in its blocks (offsets %d, %d)",
			relaysock.RingPrivSize, priv, first)
	}
	return nil
}

// blockSeq returns the seq_num of block b. The kernel writes it while it
// owns the block, so the load is atomic.
func (r *rxRing) blockSeq(b int) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.mem[b*r.blockSize+blockSeqOff])))
}

func (r *rxRing) priv(b int) []byte {
	off := b*r.blockSize + blockHdrLen
	return r.mem[off : off+relaysock.RingPrivSize]
}

// adopt takes over a ring just mapped, which earlier owners may have left
// with blocks not given back (see above). It must run before the first
// take.
func (r *rxRing) adopt() adopted {
	if r.frames {
		return r.adoptFrames()
	}
	type userBlock struct {
		b   int
		seq uint64
	}
	// First where the kernel is: the block it opened last.
	newest, newestUser := 0, false
	var newestSeq uint64
	for b := range r.refs {
		isUser := atomic.LoadUint32(r.status(b))&tpStatusUser != 0
		if seq := r.blockSeq(b); seq > newestSeq {
			newest, newestSeq, newestUser = b, seq, isUser
		}
		if r.testAfterLook != nil {
			r.testAfterLook(b)
		}
	}
	r.next = newest
	if newestUser {
		r.next = (newest + 1) % len(r.refs)
	}
	// Then what was filled before it: every block opened earlier has
	// been handed over since, so a second look finds each of them the
	// user's or given back. (A single pass misses the block the kernel
	// hands over between the look at it and the look at the next one,
	// which it opens then: that block would be behind next and never
	// read, the kernel freezing on it once a lap.) Blocks the kernel
	// opens from now on have higher seq_nums and are read from next.
	var user []userBlock
	for b := range r.refs {
		if atomic.LoadUint32(r.status(b))&tpStatusUser == 0 {
			continue
		}
		if seq := r.blockSeq(b); seq < newestSeq || b == newest && newestUser {
			user = append(user, userBlock{b, seq})
		}
	}
	slices.SortFunc(user, func(x, y userBlock) int { return cmp.Compare(x.seq, y.seq) })
	var a adopted
	r.backlog = r.backlog[:0]
	for _, u := range user {
		p := r.priv(u.b)
		var done uint32
		if binary.LittleEndian.Uint64(p[privSeqOff:]) == u.seq {
			done = binary.LittleEndian.Uint32(p[privDoneOff:])
			if conf := binary.LittleEndian.Uint32(p[privConfOff:]); conf < done {
				a.Unconfirmed += int(done - conf)
				// Counted once: should this worker die too, its
				// successor counts only what this one leaves.
				binary.LittleEndian.PutUint32(p[privConfOff:], done)
			}
		}
		if done > 0 && done >= binary.LittleEndian.Uint32(r.block(u.b)[blockNumPktsOff:]) {
			atomic.StoreUint32(r.status(u.b), tpStatusKernel)
			a.Returned++
			continue
		}
		r.seq[u.b], r.done[u.b] = u.seq, done
		r.backlog = append(r.backlog, u.b)
		a.Backlog++
		if done > 0 {
			a.Resumed++
			a.Skipped += int(done)
		}
	}
	return a
}

// mark lists block b for the next publish.
func (r *rxRing) mark(b int) {
	if !r.marked[b] {
		r.marked[b] = true
		r.unpublished = append(r.unpublished, b)
	}
}

// publish writes the progress of every block listed since the last call
// into its private area, or marks every frame handled; the block being
// forwarded stays listed.
func (r *rxRing) publish() {
	if r.frames {
		r.publishFrames()
		return
	}
	for _, b := range r.unpublished {
		p := r.priv(b)
		// seq_num last: a worker killed in between leaves the earlier
		// fill's seq_num, and its successor relays the new fill whole
		// (none of it was sent yet), not skip packets by an earlier
		// fill's count.
		if binary.LittleEndian.Uint64(p[privSeqOff:]) != r.seq[b] {
			// A new fill: nothing of it confirmed yet (the word
			// still counts an earlier fill's packets).
			binary.LittleEndian.PutUint32(p[privConfOff:], 0)
		}
		binary.LittleEndian.PutUint32(p[privDoneOff:], r.done[b])
		binary.LittleEndian.PutUint64(p[privSeqOff:], r.seq[b])
		r.marked[b] = false
		if !r.confirming[b] {
			r.confirming[b] = true
			r.unconfirmed = append(r.unconfirmed, b)
		}
	}
	r.unpublished = r.unpublished[:0]
	if r.cur >= 0 {
		r.mark(r.cur)
	}
}

// confirm records, in the blocks published since the last call, that the
// kernel has taken the sends of the packets published handled, but for
// the packet being forwarded, whose other outputs may still be queued. A
// frame ring needs nothing: its frames go back to the kernel as soon as
// the sends' completions are reaped.
func (r *rxRing) confirm() {
	for _, b := range r.unconfirmed {
		p := r.priv(b)
		conf := binary.LittleEndian.Uint32(p[privDoneOff:])
		if b == r.cur && conf > 0 {
			conf--
		}
		binary.LittleEndian.PutUint32(p[privConfOff:], conf)
		r.confirming[b] = false
	}
	r.unconfirmed = r.unconfirmed[:0]
}

// Takeover of a frame ring (TPACKET_V2). Its frames have no sequence
// number and no private area, but a frame's header ends in four bytes of
// padding that the kernel zeroes each time it fills the frame
// (tpacket_rcv). publish writes there, into every frame the worker has
// handled, a mark that grows by one per frame (never 0). The kernel fills
// frames in ring order and the worker handles them in ring order, so when
// a worker maps a ring an earlier owner left:
//
//   - a frame that is the user's and marked was handled: it goes back to
//     the kernel at once;
//   - the frame with the highest mark is the last one handled; the frames
//     after it that are the user's (unmarked) are the backlog, in ring
//     order, and the first frame after them that is the kernel's is where
//     the kernel writes next;
//   - with no mark anywhere (no owner handled a frame, or the kernel filled
//     every frame again since), the backlog starts at the user's frame the
//     kernel stamped first (tp_sec, tp_nsec), or at frame 0.

func (r *rxRing) frameMark(f int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[f*r.blockSize+frMarkOff]))
}

func (r *rxRing) frameUser(f int) bool {
	return atomic.LoadUint32(r.status(f))&tpStatusUser != 0
}

// frameTime returns the time the kernel stamped frame f with, as one
// comparable number.
func (r *rxRing) frameTime(f int) uint64 {
	fr := r.block(f)
	return uint64(binary.LittleEndian.Uint32(fr[frSecOff:]))<<32 | uint64(binary.LittleEndian.Uint32(fr[frSecOff+4:]))
}

// publishFrames marks every frame listed since the last call handled.
func (r *rxRing) publishFrames() {
	for _, f := range r.unpublished {
		r.marked[f] = false
		if r.done[f] == 0 {
			continue
		}
		if r.lastMark++; r.lastMark == 0 {
			r.lastMark = 1
		}
		atomic.StoreUint32(r.frameMark(f), r.lastMark)
	}
	r.unpublished = r.unpublished[:0]
	if r.cur >= 0 {
		r.mark(r.cur)
	}
}

// adoptFrames is adopt for a frame ring (see above).
func (r *rxRing) adoptFrames() adopted {
	n := len(r.refs)
	var a adopted
	last := -1
	for f := range n {
		m := atomic.LoadUint32(r.frameMark(f))
		if m == 0 {
			continue
		}
		if last < 0 || int32(m-r.lastMark) > 0 {
			last, r.lastMark = f, m
		}
	}
	for f := range n {
		if r.frameUser(f) && atomic.LoadUint32(r.frameMark(f)) != 0 {
			atomic.StoreUint32(r.status(f), tpStatusKernel)
			a.Returned++
		}
	}
	a.Unconfirmed = a.Returned
	start := 0
	if last >= 0 {
		start = (last + 1) % n
	} else {
		oldest := uint64(0)
		for f := range n {
			if t := r.frameTime(f); r.frameUser(f) && (oldest == 0 || t < oldest) {
				start, oldest = f, t
			}
		}
	}
	r.backlog = r.backlog[:0]
	f := start
	for range n {
		if !r.frameUser(f) {
			break
		}
		r.done[f] = 0
		r.backlog = append(r.backlog, f)
		f = (f + 1) % n
	}
	r.next = f
	a.Backlog = len(r.backlog)
	return a
}
