package worker

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// mmsgBatch is the number of packets one recvmmsg(2) takes, and the
	// number of packet buffers the mmsg backend has: a batch is sent
	// before the next one is received into the same buffers.
	mmsgBatch = 64
	// mmsgRounds bounds the batches taken from one socket per wake-up, so
	// that a flooded input cannot starve the others or the commands.
	mmsgRounds = 8
	// maxStaged is the number of sends queued before they are flushed;
	// sendmmsg(2) takes at most UIO_MAXIOV (1024) messages per call.
	maxStaged = 1024
	// cmdBufSize is how much of the command stream one read takes.
	cmdBufSize = 256 << 10
)

// mmsghdr is struct mmsghdr, which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32 // bytes received or sent, set by the kernel
	_   [4]byte
}

// sendRun is one message of a sendmmsg(2) call: the datagrams at
// positions first..first+n-1 of the dest's list, n > 1 as one UDP_SEGMENT
// send.
type sendRun struct {
	first, n int32
}

// mmsgBackend runs the loop on poll(2), recvmmsg(2) and sendmmsg(2): it
// receives a batch into its buffers, dispatches it, and sends the queued
// payloads straight from those buffers with one sendmmsg per dest, before
// the next batch reuses them. Each message names the destination; each run
// of equal-size datagrams for a dest is one message, with UDP_SEGMENT, and
// a transparent output's datagram is its headers and its payload.
type mmsgBackend struct {
	w    *worker
	pool bufPool // mmsgBatch buffers

	rmsgs [mmsgBatch]mmsghdr
	riovs [mmsgBatch]unix.Iovec

	sq sendQueue // maxStaged datagrams
	// One dest's messages, built by prepare: sruns, smsgs and sctls by
	// message; siovs one per datagram of a run, two (headers, payload) per
	// datagram of a transparent output.
	sruns []sendRun
	smsgs []mmsghdr
	sctls []sendCtl
	siovs []unix.Iovec

	frames   []int   // the frames receiveFrames holds, frameRounds long
	framesOf *rxRing // the ring they are in

	pfds      []unix.PollFd // the command socket, then one per input
	pins      []*input      // input of pfds[i+1]
	pollDirty bool
	cmdBuf    []byte
}

var _ backend = (*mmsgBackend)(nil)

func newMmsg(w *worker) (*mmsgBackend, error) {
	if err := unix.SetNonblock(w.cfg.CommandFD, true); err != nil {
		return nil, fmt.Errorf("make command fd non-blocking: %w", err)
	}
	mem, err := mapPool(mmsgBatch)
	if err != nil {
		return nil, err
	}
	b := &mmsgBackend{
		w:         w,
		pool:      bufPool{mem: mem},
		sq:        newSendQueue(maxStaged),
		sruns:     make([]sendRun, maxStaged),
		smsgs:     make([]mmsghdr, maxStaged),
		sctls:     make([]sendCtl, maxStaged),
		siovs:     make([]unix.Iovec, 2*maxStaged),
		pollDirty: true,
		cmdBuf:    make([]byte, cmdBufSize),
		frames:    make([]int, 0, frameRounds),
	}
	for i := range b.rmsgs {
		buf := b.pool.slot(i)
		b.riovs[i] = unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
		b.rmsgs[i].hdr.Iov = &b.riovs[i]
		b.rmsgs[i].hdr.Iovlen = 1
	}
	return b, nil
}

func (b *mmsgBackend) name() string { return BackendMmsg }

func (b *mmsgBackend) addInput(in *input) error {
	b.pollDirty = true
	return nil
}

func (b *mmsgBackend) removeInput(in *input) { b.pollDirty = true }

// sync has nothing to do: every send is complete when sendmmsg returns.
func (b *mmsgBackend) sync() {}

// reclaim sends what is queued: then no send points into a copy buffer.
func (b *mmsgBackend) reclaim() {
	b.flush()
	b.w.copies.endBatch()
}

func (b *mmsgBackend) close() {
	if b.pool.mem != nil {
		unmapPool(b.pool.mem)
		b.pool.mem = nil
	}
}

func (b *mmsgBackend) poll(timeout time.Duration) error {
	if b.pollDirty {
		b.rebuildPoll()
	}
	// Round up, so a wait of less than a millisecond does not spin.
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	if b.backlog() {
		ms = 0
	}
	n, err := unix.Poll(b.pfds, ms)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil
		}
		return fmt.Errorf("poll: %w", err)
	}
	if n > 0 && b.pfds[0].Revents != 0 {
		b.readCommands()
	}
	for i := 1; i < len(b.pfds); i++ {
		in := b.pins[i-1]
		if b.pfds[i].Revents == 0 && (in.ring == nil || len(in.ring.backlog) == 0) {
			continue
		}
		if in.ring != nil && b.pfds[i].Revents&unix.POLLERR != 0 {
			clearSocketError(in.fd)
		}
		b.receive(in)
	}
	return nil
}

// backlog reports whether a ring input has blocks an earlier worker
// left: they are relayed without waiting for the socket to turn readable,
// which it may not do for them (only for the block handed over last).
func (b *mmsgBackend) backlog() bool {
	for _, in := range b.pins {
		if in.ring != nil && len(in.ring.backlog) > 0 {
			return true
		}
	}
	return false
}

func (b *mmsgBackend) rebuildPoll() {
	b.pfds = append(b.pfds[:0], unix.PollFd{Fd: int32(b.w.cfg.CommandFD), Events: unix.POLLIN})
	b.pins = b.pins[:0]
	for _, in := range b.w.db.inputs {
		if in.fd >= 0 {
			b.pfds = append(b.pfds, unix.PollFd{Fd: int32(in.fd), Events: unix.POLLIN})
			b.pins = append(b.pins, in)
		}
	}
	b.pollDirty = false
}

// readCommands reads what the command socket holds and feeds it on.
func (b *mmsgBackend) readCommands() {
	for {
		n, err := unix.Read(b.w.cfg.CommandFD, b.cmdBuf)
		switch {
		case n > 0:
			b.w.cmds.feed(b.cmdBuf[:n])
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			b.w.log.Warn("read command socket", "err", err)
		}
		b.w.eof = true
		return
	}
}

// receive takes up to mmsgRounds batches (ringRounds blocks from a ring)
// from in and forwards them.
func (b *mmsgBackend) receive(in *input) {
	if in.ring != nil {
		b.receiveRing(in)
		return
	}
	for range mmsgRounds {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(in.fd), uintptr(unsafe.Pointer(&b.rmsgs[0])),
			mmsgBatch, unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		if errno != 0 {
			// EAGAIN: drained. Anything else (ENETDOWN when the link
			// went down) is a socket error that reading has cleared.
			return
		}
		n := int(r)
		for i := range n {
			// With MSG_TRUNC the length is the packet's, even when it
			// did not fit the buffer.
			b.w.d.forward(int32(in.ifindex), in.link, b.pool.slot(i), int(b.rmsgs[i].n), i, 0, b)
		}
		b.flush()
		if n < mmsgBatch {
			return
		}
	}
}

// receiveRing forwards the blocks in's ring has handed over, each sent
// and given back before the next. Poll reports the socket readable as long
// as a block waits, so what ringRounds leaves is taken on the next round.
func (b *mmsgBackend) receiveRing(in *input) {
	if in.ring.frames {
		b.receiveFrames(in)
		return
	}
	for range ringRounds {
		blk := in.ring.take()
		if blk < 0 {
			return
		}
		b.w.forwardBlock(in, blk, b)
		b.flush()
		b.w.releaseBlock(bufID(in.ring, blk))
	}
}

// receiveFrames forwards up to frameRounds frames in's frame ring has
// handed over, sends what they queued and gives them back: one sendmmsg
// per dest for the whole batch.
func (b *mmsgBackend) receiveFrames(in *input) {
	r := in.ring
	b.frames, b.framesOf = b.frames[:0], r
	for range frameRounds {
		f := r.take()
		if f < 0 {
			break
		}
		b.w.forwardBlock(in, f, b)
		b.frames = append(b.frames, f)
	}
	b.flush()
	b.w.copies.endBatch()
	b.framesOf = nil
}

// releaseFrames gives back the frames forwarded so far, whose sends flush
// has just made: in the middle of a batch too, so that a burst finds them.
func (b *mmsgBackend) releaseFrames() {
	for _, f := range b.frames {
		b.w.releaseBlock(bufID(b.framesOf, f))
	}
	b.frames = b.frames[:0]
}

// send queues a send; see sender.
func (b *mmsgBackend) send(o *output, buf int, pkt []byte, off, n int, hdr []byte) {
	p := (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(pkt)), off))
	if b.sq.add(o, buf, p, n, hdr) {
		b.flush()
	}
}

// flush sends everything queued, one sendmmsg run per dest, after
// publishing the rings' progress: the sends leave with these calls.
func (b *mmsgBackend) flush() {
	b.w.rings.publish()
	for _, d := range b.sq.touched {
		idx, sizes := b.sq.list(d)
		for from := 0; from < len(idx); {
			k := b.prepare(d, idx, sizes, from)
			from = b.sendAll(d, idx, k)
		}
	}
	b.sq.reset()
	b.w.rings.confirm()
	b.releaseFrames()
}

// prepare builds the messages that send the datagrams idx[from:] of d's
// list, whose payload sizes are sizes: one per run the socket's GSO limits
// allow, each naming d and carrying its TTL when it has one. It returns the
// number of messages.
func (b *mmsgBackend) prepare(d *dest, idx, sizes []int32, from int) int {
	m, v := 0, 0
	for i := from; i < len(idx); m++ {
		k := d.eg.gso.run(sizes[i:])
		h := &b.smsgs[m].hdr
		*h = unix.Msghdr{Iov: &b.siovs[v]}
		setName(h, &d.name)
		first := v
		if hdr := b.sq.header(idx[i]); len(hdr) > 0 {
			b.siovs[v].Base = &hdr[0]
			b.siovs[v].SetLen(len(hdr))
			v++
		}
		for j := i; j < i+k; j++ {
			s := &b.sq.q[idx[j]]
			b.siovs[v].Base = s.p
			b.siovs[v].SetLen(int(s.n))
			v++
		}
		h.SetIovlen(v - first)
		seg := 0
		if k > 1 {
			seg = int(sizes[i])
		}
		b.sctls[m].attach(h, b.sctls[m].set(seg, d.key.ttl, d.key.eg.V6))
		b.sruns[m] = sendRun{first: int32(i), n: int32(k)}
		i += k
	}
	return m
}

// sendAll sends the first k prepared messages to d and returns the
// position in d's list (idx) to prepare again from, len(idx) when done. A
// message the socket refuses is counted as failed for each of its
// datagrams and skipped; a full socket drops the rest, counted, rather than
// wait. A refused UDP_SEGMENT send changes the socket's GSO limits, and the
// datagrams from that message on are prepared again. sendmmsg reports an
// error only for its first message, so a later one that fails is simply
// the first of the next call.
func (b *mmsgBackend) sendAll(d *dest, idx []int32, k int) int {
	for m := 0; m < k; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(d.eg.fd), uintptr(unsafe.Pointer(&b.smsgs[m])),
			uintptr(k-m), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == 0:
			for end := m + int(r); m < end; m++ {
				b.done(idx, m, 0)
			}
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			for ; m < k; m++ {
				b.done(idx, m, errno)
			}
		case b.sruns[m].n > 1 && refusesGSO(errno):
			run := b.sruns[m]
			b.w.narrowGSO(d.eg, errno, int(b.sq.q[idx[run.first]].n))
			return int(run.first)
		default:
			b.done(idx, m, errno)
			m++
		}
	}
	return len(idx)
}

// done counts message m as sent (errno 0) or failed, once per datagram.
func (b *mmsgBackend) done(idx []int32, m int, errno unix.Errno) {
	run := b.sruns[m]
	for k, i := range idx[run.first : run.first+run.n] {
		s := &b.sq.q[i]
		if errno == 0 {
			b.w.d.sent(s.o, int(s.n))
			if s.o.trace != nil {
				b.w.d.traceSent(s, k, int(run.n))
			}
		} else {
			b.w.d.failed(s.o, errno)
		}
	}
	if errno == 0 && run.n > 1 {
		b.w.d.sentGSO(int(run.n))
	}
}
