package worker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/worker/uring"
)

const (
	// uringBufs is the number of packet buffers in the provided-buffer
	// ring all inputs' multishot receives take from (a power of two).
	// When it runs dry a receive ends with ENOBUFS and the packets wait
	// in the socket's receive buffer until it is re-armed.
	uringBufs = 256
	uringBGID = 0
	// Ring sizes: sends of a receive batch are queued in the SQ and
	// submitted together; the CQ holds every operation in flight.
	uringSQ = 1024
	uringCQ = 8192
	// sendFlags make a send to a full socket fail with EAGAIN at once
	// (io_uring then completes it instead of waiting for room), so a slow
	// output drops rather than stalls.
	sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL
	// rearmDelay is how long an input whose receive failed waits before
	// it is armed again, so a persistent error cannot spin the loop.
	rearmDelay = 100 * time.Millisecond
	// uringGSOMsgs is the number of UDP_SEGMENT sends that may be in
	// flight; a run that finds none free leaves one datagram per send.
	uringGSOMsgs = 256
)

// User data of the ring's operations: the kind in the top byte; a receive,
// or the poll of an input with a receive ring, carries the input's
// generation (24 bits) and slot (32 bits), a send the index of its (first)
// datagram's context (32 bits) and a UDP_SEGMENT send also its message (16
// bits above).
const (
	udKindShift        = 56
	udRecv      uint64 = 1 << udKindShift
	udSend      uint64 = 2 << udKindShift
	udCmd       uint64 = 3 << udKindShift
	udCancel    uint64 = 4 << udKindShift
	udSendGSO   uint64 = 5 << udKindShift
	udPoll      uint64 = 6 << udKindShift
	udGenMask          = 1<<24 - 1
)

// gsoMsg is the msghdr of one UDP_SEGMENT SENDMSG with its name, control
// messages and iovecs, in memory from uring.Mmap: the kernel may read them
// until the operation completes.
type gsoMsg struct {
	hdr  unix.Msghdr
	name sockName
	ctl  sendCtl
	iovs [gsoMaxSegments]unix.Iovec
}

// sendSlot is what one datagram's send needs besides its payload: its
// destination, and for a SENDMSG the msghdr, a TTL control message and
// two iovecs, the first pointing at the headers of a transparent output's
// datagram. One per send context, in memory from uring.Mmap.
type sendSlot struct {
	hdr  unix.Msghdr
	name sockName
	ctl  sendCtl
	iovs [2]unix.Iovec
	ip   [maxHdr]byte
}

// recvd is a received packet waiting for dispatch.
type recvd struct {
	in  *input
	buf uint16
	n   int32
}

// uringBackend runs the loop on one io_uring: a multishot RECV per input
// socket taking buffers from a provided-buffer ring, sends pointing into
// the receive buffers, a READ on the command socket, and the periodic tick
// as the timeout of the wait. The sends of one dispatch are queued per
// dest and leave as one SENDMSG with UDP_SEGMENT per run of equal-size
// datagrams, and one SEND with the destination per other datagram (a
// SENDMSG when it carries a TTL or a transparent output's headers). A
// buffer goes back to the ring when the last send of its packet completes.
type uringBackend struct {
	w    *worker
	ring *uring.Ring
	pool bufPool
	br   *uring.BufRing
	cqes [256]uring.CQE

	refs  [uringBufs]uint16 // per buffer: sends in flight, plus 1 while dispatching
	free  int               // buffers the kernel may fill
	added int               // buffers given back since the last Advance

	// fifo holds received packets not yet dispatched; each holds its
	// own buffer, so it never needs more than uringBufs entries.
	fifo            [uringBufs]recvd
	fifoHead, fifoN int

	// sq queues the datagrams of one dispatch. Each datagram in flight
	// holds a context in sends and its slot in slots; those of a
	// UDP_SEGMENT send are chained and it holds a message in msgs.
	sq        sendQueue
	sends     []pending // by index, one per datagram the ring allows in flight
	freeSends []uint32  // free indexes of sends
	slotMem   []byte    // off-heap memory of slots
	slots     []sendSlot
	msgMem    []byte // off-heap memory of msgs
	msgs      []gsoMsg
	freeMsgs  []uint16
	// redo holds the datagrams of refused UDP_SEGMENT sends, to be sent
	// again one by one before the next dispatch: a FIFO ring as long as
	// sends. A socket's first refusal changes its limits, so redo could
	// fill only if more datagrams than that were refused between two
	// dispatches; those it cannot take are dropped and counted.
	redo            []pending
	redoHead, redoN int

	inputs []*input // by slot; nil when free
	gen    uint32   // generation given to the last input added
	rearm  bool     // some input's receive needs arming
	more   bool     // a ring has blocks left that ringRounds did not take

	cmdBuf           []byte // off-heap: the kernel fills it after Submit returns
	cmdArmed, cmdEOF bool

	// sendto: IORING_OP_SEND takes a destination (Linux 6.1); without
	// it every datagram is a SENDMSG.
	sendto bool
}

var _ backend = (*uringBackend)(nil)

// newUring sets up the ring and its buffers. Errors that mean "this kernel
// or sandbox has no usable io_uring" match uring.ErrUnavailable.
func newUring(w *worker) (b *uringBackend, err error) {
	ring, err := uring.New(&uring.Config{Entries: uringSQ, CQEntries: uringCQ})
	if err != nil {
		return nil, err
	}
	b = &uringBackend{w: w, ring: ring}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if err := ring.Probe(uring.OpRecv, uring.OpSend, uring.OpSendmsg, uring.OpRead, uring.OpAsyncCancel); err != nil {
		return nil, err
	}
	if b.br, err = ring.RegisterBufRing(uringBufs, uringBGID); err != nil {
		// Provided-buffer rings arrived in Linux 5.19.
		return nil, fmt.Errorf("%w: %w", uring.ErrUnavailable, err)
	}
	if b.pool.mem, err = mapPool(uringBufs); err != nil {
		return nil, err
	}
	if b.cmdBuf, err = uring.Mmap(cmdBufSize); err != nil {
		return nil, err
	}
	for i := range uringBufs {
		b.recycle(uint16(i))
	}
	if b.msgMem, err = uring.Mmap(uringGSOMsgs * int(unsafe.Sizeof(gsoMsg{}))); err != nil {
		return nil, err
	}
	b.msgs = unsafe.Slice((*gsoMsg)(unsafe.Pointer(&b.msgMem[0])), uringGSOMsgs)
	if b.sendto, err = b.probeSendto(); err != nil {
		return nil, err
	}
	b.freeMsgs = make([]uint16, uringGSOMsgs)
	for i := range b.freeMsgs {
		b.freeMsgs[i] = uint16(i)
	}
	_, cq := ring.Entries()
	if b.slotMem, err = uring.Mmap(int(cq) * int(unsafe.Sizeof(sendSlot{}))); err != nil {
		return nil, err
	}
	b.slots = unsafe.Slice((*sendSlot)(unsafe.Pointer(&b.slotMem[0])), cq)
	b.sq = newSendQueue(maxStaged)
	b.sends = make([]pending, cq)
	b.redo = make([]pending, cq)
	b.freeSends = make([]uint32, cq)
	for i := range b.freeSends {
		b.freeSends[i] = uint32(cq) - 1 - uint32(i)
	}
	return b, nil
}

func (b *uringBackend) name() string { return BackendUring }

func (b *uringBackend) close() {
	if b.ring != nil {
		b.ring.Close() // cancels what is in flight; unmaps the buffer ring
		b.ring = nil
	}
	if b.pool.mem != nil {
		unmapPool(b.pool.mem)
		b.pool.mem = nil
	}
	if b.cmdBuf != nil {
		_ = uring.Munmap(b.cmdBuf)
		b.cmdBuf = nil
	}
	if b.msgMem != nil {
		_ = uring.Munmap(b.msgMem)
		b.msgMem, b.msgs = nil, nil
	}
	if b.slotMem != nil {
		_ = uring.Munmap(b.slotMem)
		b.slotMem, b.slots = nil, nil
	}
}

func (b *uringBackend) addInput(in *input) error {
	in.slot = -1
	for i, x := range b.inputs {
		if x == nil {
			in.slot = i
			break
		}
	}
	if in.slot < 0 {
		in.slot = len(b.inputs)
		b.inputs = append(b.inputs, nil)
	}
	b.inputs[in.slot] = in
	b.gen = (b.gen + 1) & udGenMask
	in.gen, in.armed, in.failing, in.rearmAt = b.gen, false, false, time.Time{}
	b.rearm = true
	// Blocks an earlier worker left are relayed at once: the socket may
	// not turn readable for them (it does for the block handed over
	// last).
	b.more = b.more || in.ring != nil && len(in.ring.backlog) > 0
	return nil
}

// removeInput cancels the input's receive before its socket is closed:
// close(2) does not end io_uring requests, and the cancel must find the fd
// still open. Completions still on their way carry a stale generation.
func (b *uringBackend) removeInput(in *input) {
	if in.slot < 0 {
		return
	}
	b.inputs[in.slot] = nil
	in.slot = -1
	if !in.armed {
		return
	}
	in.armed = false
	sqe := b.getSQE()
	if sqe == nil {
		b.w.log.Error("cannot cancel the receive of a closing input", "ifindex", in.ifindex)
		return
	}
	sqe.PrepCancelFD(in.fd)
	sqe.SetUserData(udCancel)
	b.sync()
}

// sync submits queued operations; the kernel resolves their fds on
// submission, so sockets may be closed afterwards. The rings' progress is
// published first: the sends go to the kernel with this call.
func (b *uringBackend) sync() {
	b.w.rings.publish()
	if _, err := b.ring.Submit(); err != nil {
		b.w.log.Error("io_uring submit", "err", err)
	}
}

// settle records the rings' published progress as confirmed (see
// ringTable.confirm) once everything it covers has been through a
// returned submit and its completions reaped: nothing prepared or queued
// left, nothing the kernel refused waiting to go out again. Anywhere else
// the progress stays unconfirmed, which a successor counts: an upper
// bound, never less than what a death loses.
func (b *uringBackend) settle() {
	if b.ring.Queued() == 0 && b.sq.empty() && b.redoN == 0 {
		b.w.rings.confirm()
	}
}

// reclaim sends what is prepared and reaps what completed. Sends hold
// their own references, so the copy buffers' dispatch holds go at once.
func (b *uringBackend) reclaim() {
	b.w.copies.endBatch()
	b.flush()
	b.sync()
	b.reap()
	b.settle()
}

// poll arms what needs arming, submits the queued sends, waits for
// completions up to timeout, and forwards what was received.
func (b *uringBackend) poll(timeout time.Duration) error {
	b.arm()
	if b.rearm {
		timeout = min(timeout, rearmDelay/4)
	}
	if b.more {
		timeout = 0
	}
	b.w.rings.publish()
	if _, err := b.ring.SubmitAndWait(1, timeout); err != nil {
		return fmt.Errorf("io_uring wait: %w", err)
	}
	b.reap()
	b.settle()
	b.dispatch()
	if b.cmdEOF {
		b.w.eof = true
	}
	return nil
}

// arm gives recycled buffers to the kernel and (re-)arms the command read
// and the inputs' receives.
func (b *uringBackend) arm() {
	if b.added > 0 {
		b.br.Advance(b.added)
		b.added = 0
	}
	if !b.cmdArmed && !b.cmdEOF {
		if sqe := b.getSQE(); sqe != nil {
			sqe.PrepRead(b.w.cfg.CommandFD, uintptr(unsafe.Pointer(&b.cmdBuf[0])), uint32(len(b.cmdBuf)))
			sqe.SetUserData(udCmd)
			b.cmdArmed = true
		}
	}
	if !b.rearm {
		return
	}
	b.rearm = false
	now := time.Now()
	for _, in := range b.inputs {
		if in == nil || in.armed {
			continue
		}
		sqe := (*uring.SQE)(nil)
		if (b.free > 0 || in.ring != nil) && !now.Before(in.rearmAt) {
			sqe = b.getSQE()
		}
		if sqe == nil {
			b.rearm = true
			continue
		}
		ud := uint64(in.gen)<<32 | uint64(in.slot)
		if in.ring != nil {
			// The socket turns readable each time the kernel hands
			// over a block.
			sqe.PrepPollAddMultishot(in.fd, unix.POLLIN)
			sqe.SetUserData(udPoll | ud)
		} else {
			// MSG_TRUNC makes the result the packet's length even when
			// the buffer was too small, so truncation is detected.
			sqe.PrepRecvMultishot(in.fd, uringBGID, unix.MSG_TRUNC)
			sqe.SetUserData(udRecv | ud)
		}
		in.armed = true
	}
}

// getSQE returns a free SQE, submitting and reaping first when the ring is
// full; nil when it stays full.
func (b *uringBackend) getSQE() *uring.SQE {
	if sqe := b.ring.GetSQE(); sqe != nil {
		return sqe
	}
	b.sync()
	b.reap()
	return b.ring.GetSQE()
}

// reap handles every completion ready. It never dispatches: receives are
// queued, so reap may run in the middle of a dispatch (from getSQE).
func (b *uringBackend) reap() {
	for {
		n := b.ring.Reap(b.cqes[:])
		for i := range n {
			b.complete(&b.cqes[i])
		}
		if n < len(b.cqes) {
			return
		}
	}
}

func (b *uringBackend) complete(c *uring.CQE) {
	switch c.UserData &^ (1<<udKindShift - 1) {
	case udSend:
		b.sendDone(uint32(c.UserData), c.Res, false)
	case udSendGSO:
		b.freeMsgs = append(b.freeMsgs, uint16(c.UserData>>32))
		b.sendDone(uint32(c.UserData), c.Res, true)
	case udRecv:
		b.received(c)
	case udPoll:
		in := b.inputOf(c)
		if in == nil {
			return
		}
		if c.Res > 0 && c.Res&unix.POLLERR != 0 {
			clearSocketError(in.fd)
		}
		if !c.More() {
			b.ended(in, c.Res)
		}
	case udCmd:
		b.cmdArmed = false
		switch {
		case c.Res > 0:
			b.w.cmds.feed(b.cmdBuf[:c.Res])
		case c.Res == 0:
			b.cmdEOF = true
		case c.Res == -int32(unix.EINTR) || c.Res == -int32(unix.EAGAIN):
		default:
			b.w.log.Warn("read command socket", "err", unix.Errno(-c.Res))
			b.cmdEOF = true
		}
	}
}

// received handles a receive completion: queue the packet, and note when
// the multishot receive ended and must be armed again.
func (b *uringBackend) received(c *uring.CQE) {
	in := b.inputOf(c)
	if in != nil && c.Res >= 0 {
		in.failing = false
	}
	if bid, ok := c.BufferID(); ok {
		b.free--
		if in != nil && c.Res >= 0 {
			b.fifo[(b.fifoHead+b.fifoN)%uringBufs] = recvd{in: in, buf: bid, n: c.Res}
			b.fifoN++
		} else {
			b.recycle(bid)
		}
	}
	if in == nil || c.More() {
		return
	}
	b.ended(in, c.Res)
}

// inputOf returns the input a receive or poll completion is for, nil when
// that input is gone.
func (b *uringBackend) inputOf(c *uring.CQE) *input {
	slot, gen := int(uint32(c.UserData)), uint32(c.UserData>>32)&udGenMask
	if slot < len(b.inputs) && b.inputs[slot] != nil && b.inputs[slot].gen == gen {
		return b.inputs[slot]
	}
	return nil
}

// ended notes that in's multishot receive or poll ended with result res
// and must be armed again. Out of buffers (ENOBUFS), or a final CQE with
// data: arm again once buffers are back. An error (ENETDOWN while the link
// is down): arm again a little later, and log it once until data flows
// again.
func (b *uringBackend) ended(in *input, res int32) {
	in.armed = false
	b.rearm = true
	if res < 0 && res != -int32(unix.ENOBUFS) {
		in.rearmAt = time.Now().Add(rearmDelay)
		if !in.failing {
			in.failing = true
			b.w.log.Warn("receive failed", "ifindex", in.ifindex, "err", unix.Errno(-res))
		}
	}
}

// dispatch sends again what refused UDP_SEGMENT sends carried, forwards the
// queued packets and sends what they queued. The buffer of each packet is
// held while it is dispatched, and returns to the ring with the last
// completion of its sends.
func (b *uringBackend) dispatch() {
	b.resend()
	for b.fifoN > 0 {
		p := b.fifo[b.fifoHead]
		b.fifoHead = (b.fifoHead + 1) % uringBufs
		b.fifoN--
		b.refs[p.buf] = 1
		b.w.d.forward(int32(p.in.ifindex), p.in.link, b.pool.slot(int(p.buf)), int(p.n), int(p.buf), 0, b)
		b.release(uint32(p.buf))
	}
	b.more = false
	for _, in := range b.inputs {
		if in == nil || in.ring == nil {
			continue
		}
		for k, rounds := 0, in.ring.rounds(); ; k++ {
			if k == rounds {
				b.more = true
				break
			}
			// Out of send contexts: the completions of the sends in
			// flight wake the loop, which takes the block then.
			if !b.makeRoom() {
				break
			}
			blk := in.ring.take()
			if blk < 0 {
				break
			}
			b.w.forwardBlock(in, blk, b)
			b.release(bufID(in.ring, blk))
		}
	}
	b.w.copies.endBatch() // their sends hold them
	b.flush()
}

// send queues a send of the payload straight from the receive buffer,
// which it holds until the send completes; see sender.
func (b *uringBackend) send(o *output, buf int, pkt []byte, off, n int, hdr []byte) {
	b.holdBuf(uint32(buf))
	p := (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(pkt)), off))
	if b.sq.add(o, buf, p, n, hdr) {
		// Submit and reap at once rather than with the next poll: the
		// sends complete as they are submitted (they never wait), and
		// reaping them gives their frames back to the kernel in the
		// middle of a long dispatch, when a burst needs them.
		b.flush()
		b.sync()
		b.reap()
		// What the kernel refused goes out again before the rest of
		// this dispatch, in its place.
		if b.redoN > 0 {
			b.resend()
		}
		b.settle()
	}
}

// makeRoom makes sure that at least half the send contexts are free, so
// that what a receive block or a full send queue prepares next finds one
// for each datagram (a send that finds none is dropped, ENOBUFS): a block
// of small datagrams fanned out to several outputs holds thousands of
// sends. When fewer are free it submits what is prepared and reaps the
// completions (sends are non-blocking, so most complete as they are
// submitted). It reports whether half are free.
func (b *uringBackend) makeRoom() bool {
	half := len(b.sends) / 2
	if len(b.freeSends) >= half {
		return true
	}
	b.flush()
	b.sync()
	b.reap()
	return len(b.freeSends) >= half
}

// flush prepares a send for everything queued: one SENDMSG with
// UDP_SEGMENT per run the socket's GSO limits allow, one send per other
// datagram. The ring takes them with the next submit.
func (b *uringBackend) flush() {
	for _, d := range b.sq.touched {
		idx, sizes := b.sq.list(d)
		for i := 0; i < len(idx); {
			k := d.eg.gso.run(sizes[i:])
			if k == 1 || !b.sendRun(d, idx[i:i+k]) {
				for _, j := range idx[i : i+k] {
					b.sendOne(d, j)
				}
			}
			i += k
		}
	}
	b.sq.reset()
}

// sendOne prepares the send of datagram j of the queue to d, or drops it,
// counted, when the ring is full: a SEND with the destination, or a
// SENDMSG when d has a TTL of its own or the datagram a transparent
// output's headers.
func (b *uringBackend) sendOne(d *dest, j int32) {
	p := &b.sq.q[j]
	var sqe *uring.SQE
	if len(b.freeSends) > 0 {
		sqe = b.getSQE()
	}
	if sqe == nil {
		b.w.d.failed(p.o, unix.ENOBUFS)
		b.release(p.buf)
		return
	}
	i := b.hold(p, -1)
	sl := &b.slots[i]
	sl.name = d.name
	sqe.SetUserData(udSend | uint64(i))
	hdr := b.sq.header(j)
	if len(hdr) == 0 && d.key.ttl == 0 && b.sendto {
		sqe.PrepSendto(d.eg.fd, uintptr(unsafe.Pointer(p.p)), uint32(p.n), sendFlags,
			uintptr(unsafe.Pointer(&sl.name.b[0])), uint16(sl.name.n))
		return
	}
	sl.hdr = unix.Msghdr{Iov: &sl.iovs[0]}
	setName(&sl.hdr, &sl.name)
	v := 0
	if len(hdr) > 0 {
		copy(sl.ip[:], hdr)
		sl.iovs[v].Base = &sl.ip[0]
		sl.iovs[v].SetLen(len(hdr))
		v++
	}
	sl.iovs[v].Base = p.p
	sl.iovs[v].SetLen(int(p.n))
	sl.hdr.SetIovlen(v + 1)
	sl.ctl.attach(&sl.hdr, sl.ctl.set(0, d.key.ttl, d.key.eg.V6))
	sqe.PrepSendmsg(d.eg.fd, &sl.hdr, sendFlags)
}

// probeSendto reports whether IORING_OP_SEND takes a destination address
// (addr2, Linux 6.1): an older kernel refuses the field with EINVAL. It
// sends one byte from an unbound AF_UNIX datagram socket to an abstract
// address nobody holds, which a kernel that takes the address refuses
// otherwise (ECONNREFUSED). It runs before anything else is in the ring,
// with the command buffer as scratch space.
func (b *uringBackend) probeSendto() (bool, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("probe IORING_OP_SEND with an address: %w", err)
	}
	defer unix.Close(fd)
	mem := b.cmdBuf
	// struct sockaddr_un: the family, then an abstract name (a NUL first).
	binary.NativeEndian.PutUint16(mem[0:], unix.AF_UNIX)
	name := fmt.Sprintf("\x00mcr-sendto-probe-%d", unix.Getpid())
	n := copy(mem[2:110], name)
	sqe := b.ring.GetSQE()
	sqe.PrepSendto(fd, uintptr(unsafe.Pointer(&mem[128])), 1, sendFlags, uintptr(unsafe.Pointer(&mem[0])), uint16(2+n))
	sqe.SetUserData(udCancel)
	if _, err := b.ring.SubmitAndWait(1, time.Second); err != nil {
		return false, fmt.Errorf("probe IORING_OP_SEND with an address: %w", err)
	}
	if b.ring.Reap(b.cqes[:1]) != 1 {
		return false, errors.New("probe IORING_OP_SEND with an address: no completion within 1 s")
	}
	return b.cqes[0].Res != -int32(unix.EINVAL), nil
}

// sendRun prepares one SENDMSG with UDP_SEGMENT of the datagrams idx of
// the queue to d, cut at the size of the first. It returns false, having
// done nothing, when the ring has no room for it.
func (b *uringBackend) sendRun(d *dest, idx []int32) bool {
	if len(b.freeMsgs) == 0 || len(b.freeSends) < len(idx) {
		return false
	}
	sqe := b.getSQE()
	if sqe == nil {
		return false
	}
	slot := b.freeMsgs[len(b.freeMsgs)-1]
	b.freeMsgs = b.freeMsgs[:len(b.freeMsgs)-1]
	m := &b.msgs[slot]
	// Chain the contexts from the last datagram back to the first.
	next := int32(-1)
	for j := len(idx) - 1; j >= 0; j-- {
		p := &b.sq.q[idx[j]]
		m.iovs[j].Base = p.p
		m.iovs[j].SetLen(int(p.n))
		next = int32(b.hold(p, next))
	}
	m.hdr = unix.Msghdr{Iov: &m.iovs[0]}
	m.hdr.SetIovlen(len(idx))
	m.name = d.name
	setName(&m.hdr, &m.name)
	m.ctl.attach(&m.hdr, m.ctl.set(int(b.sq.q[idx[0]].n), d.key.ttl, d.key.eg.V6))
	sqe.PrepSendmsg(d.eg.fd, &m.hdr, sendFlags)
	sqe.SetUserData(udSendGSO | uint64(slot)<<32 | uint64(next))
	return true
}

// hold gives datagram p a context, chained to next, and returns its index;
// the context takes over p's hold on its buffer. A context must be free.
func (b *uringBackend) hold(p *pending, next int32) uint32 {
	i := b.freeSends[len(b.freeSends)-1]
	b.freeSends = b.freeSends[:len(b.freeSends)-1]
	b.sends[i] = *p
	b.sends[i].next = next
	return i
}

// sendDone handles the completion of the send whose first datagram has
// context first: each datagram is counted as sent or failed and its
// buffer released, or, when the kernel refused a UDP_SEGMENT send, the
// socket's GSO limits change and the datagrams wait in redo to be sent
// again one by one.
func (b *uringBackend) sendDone(first uint32, res int32, gso bool) {
	var errno unix.Errno
	if res < 0 {
		errno = unix.Errno(-res)
	}
	again := gso && errno != 0 && refusesGSO(errno)
	if again {
		s := &b.sends[first]
		b.w.narrowGSO(s.o.d.eg, errno, int(s.n))
	}
	n, segs := 0, 1
	if gso && b.w.db.traces != nil {
		segs = b.chainLen(first)
	}
	for i := int32(first); i >= 0; n++ {
		s := &b.sends[i]
		switch {
		case again && b.redoN < len(b.redo):
			b.redo[(b.redoHead+b.redoN)%len(b.redo)] = *s
			b.redoN++
		case errno == 0:
			b.w.d.sent(s.o, int(s.n))
			if s.o.trace != nil {
				b.w.d.traceSent(s, n, segs)
			}
			b.release(s.buf)
		default:
			b.w.d.failed(s.o, errno)
			b.release(s.buf)
		}
		next := s.next
		*s = pending{}
		b.freeSends = append(b.freeSends, uint32(i))
		i = next
	}
	if gso && errno == 0 {
		b.w.d.sentGSO(n)
	}
}

// chainLen is the number of datagrams of the send whose first has context
// first, for traces.
func (b *uringBackend) chainLen(first uint32) int {
	n := 0
	for i := int32(first); i >= 0; i = b.sends[i].next {
		n++
	}
	return n
}

// resend queues the datagrams of refused UDP_SEGMENT sends again, in the
// order they were sent: the socket's limits no longer group them.
func (b *uringBackend) resend() {
	for b.redoN > 0 {
		p := b.redo[b.redoHead]
		b.redo[b.redoHead] = pending{}
		b.redoHead = (b.redoHead + 1) % len(b.redo)
		b.redoN--
		if !p.o.open() {
			b.w.d.failed(p.o, 0) // the output's socket closed meanwhile
			b.release(p.buf)
			continue
		}
		if b.sq.add(p.o, int(p.buf), p.p, int(p.n), nil) {
			b.flush()
		}
	}
}

// holdBuf counts one more send pointing into buffer buf, a pool slot or
// a ring block.
func (b *uringBackend) holdBuf(buf uint32) {
	if buf&ringBufBit != 0 {
		b.w.holdBlock(buf)
		return
	}
	b.refs[buf]++
}

// release drops one hold on buffer buf: a pool slot goes back to the
// buffer ring with the last, a ring block to the kernel.
func (b *uringBackend) release(buf uint32) {
	if buf&ringBufBit != 0 {
		b.w.releaseBlock(buf)
		return
	}
	if b.refs[buf]--; b.refs[buf] == 0 {
		b.recycle(uint16(buf))
	}
}

// recycle gives buffer buf back to the kernel with the next Advance.
func (b *uringBackend) recycle(buf uint16) {
	slot := b.pool.slot(int(buf))
	b.br.Add(uintptr(unsafe.Pointer(&slot[0])), uint32(len(slot)), buf, b.added)
	b.added++
	b.free++
}
