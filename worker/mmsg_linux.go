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

// staged is one queued send: payload bytes for o's egress socket, chained
// to the next send queued for the same socket.
type staged struct {
	o    *output
	base *byte
	n    int
	next int32
}

// mmsgBackend runs the loop on poll(2), recvmmsg(2) and sendmmsg(2): it
// receives a batch into its buffers, dispatches it, and sends the queued
// payloads straight from those buffers with one sendmmsg per egress socket,
// before the next batch reuses them.
type mmsgBackend struct {
	w    *worker
	pool bufPool // mmsgBatch buffers

	rmsgs [mmsgBatch]mmsghdr
	riovs [mmsgBatch]unix.Iovec

	stage   []staged // len ≤ maxStaged
	touched []*egress
	smsgs   []mmsghdr
	siovs   []unix.Iovec
	sorder  []int32 // stage index of each smsgs entry

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
		stage:     make([]staged, 0, maxStaged),
		smsgs:     make([]mmsghdr, maxStaged),
		siovs:     make([]unix.Iovec, maxStaged),
		sorder:    make([]int32, maxStaged),
		pollDirty: true,
		cmdBuf:    make([]byte, cmdBufSize),
	}
	for i := range b.rmsgs {
		buf := b.pool.slot(i)
		b.riovs[i] = unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
		b.rmsgs[i].hdr.Iov = &b.riovs[i]
		b.rmsgs[i].hdr.Iovlen = 1
	}
	for i := range b.smsgs {
		b.smsgs[i].hdr.Iov = &b.siovs[i]
		b.smsgs[i].hdr.Iovlen = 1
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
	n, err := unix.Poll(b.pfds, ms)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil
		}
		return fmt.Errorf("poll: %w", err)
	}
	if n == 0 {
		return nil
	}
	if b.pfds[0].Revents != 0 {
		b.readCommands()
	}
	for i := 1; i < len(b.pfds); i++ {
		if b.pfds[i].Revents != 0 {
			b.receive(b.pins[i-1])
		}
	}
	return nil
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

// receive takes up to mmsgRounds batches from in and forwards them.
func (b *mmsgBackend) receive(in *input) {
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
			b.w.d.forward(int32(in.ifindex), b.pool.slot(i), int(b.rmsgs[i].n), i, b)
		}
		b.flush()
		if n < mmsgBatch {
			return
		}
	}
}

// send queues a send; see sender.
func (b *mmsgBackend) send(o *output, buf int, pkt []byte, off, n int) bool {
	if len(b.stage) == cap(b.stage) {
		b.flush()
	}
	i := int32(len(b.stage))
	base := (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(pkt)), off))
	b.stage = append(b.stage, staged{o: o, base: base, n: n, next: -1})
	eg := o.eg
	if eg.queued == 0 {
		eg.head = i
		b.touched = append(b.touched, eg)
	} else {
		b.stage[eg.tail].next = i
	}
	eg.tail = i
	eg.queued++
	return true
}

// flush sends everything queued, one sendmmsg run per egress socket.
func (b *mmsgBackend) flush() {
	for _, eg := range b.touched {
		k := 0
		for i := eg.head; i >= 0; i = b.stage[i].next {
			s := &b.stage[i]
			b.siovs[k] = unix.Iovec{Base: s.base, Len: uint64(s.n)}
			b.sorder[k] = i
			k++
		}
		b.sendAll(eg, k)
		eg.head, eg.tail, eg.queued = -1, -1, 0
	}
	clear(b.touched)
	b.touched = b.touched[:0]
	clear(b.stage)
	b.stage = b.stage[:0]
}

// sendAll sends the first k prepared messages on eg. A message the socket
// refuses is counted and skipped; a full socket drops the rest, counted,
// rather than wait.
func (b *mmsgBackend) sendAll(eg *egress, k int) {
	for i := 0; i < k; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(eg.fd), uintptr(unsafe.Pointer(&b.smsgs[i])),
			uintptr(k-i), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			for ; i < k; i++ {
				b.w.d.failed(b.stage[b.sorder[i]].o, errno)
			}
			return
		default:
			b.w.d.failed(b.stage[b.sorder[i]].o, errno)
			i++
			continue
		}
		for j := i; j < i+int(r); j++ {
			b.w.d.sent(b.stage[b.sorder[j]].o, int(b.smsgs[j].n))
		}
		i += int(r)
	}
}
