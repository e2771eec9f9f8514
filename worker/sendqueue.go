package worker

import "syscall"

// pending is one datagram waiting to be sent: n payload bytes at p, inside
// packet buffer buf, for output o. p points into the backend's packet
// buffers, which live outside the Go heap.
type pending struct {
	o    *output
	p    *byte
	n    int32
	buf  uint32 // a pool slot, or a ring block (ringBufBit)
	next int32  // in a sendQueue: the next datagram for the same socket; -1: none
	// retried marks a datagram sent again after ECONNREFUSED
	// (connRefused), so that a second refusal counts as a failure.
	retried bool
}

// sendQueue collects the sends of one receive batch per egress socket, in
// arrival order, so that each socket's runs of equal-size datagrams can
// leave as single UDP_SEGMENT sends (gsoLimits.run). Its capacity is fixed
// at creation and nothing in it allocates once touched has grown to the
// number of sockets in use: the backend flushes it when add reports it
// full and at the end of every receive batch. The datagrams' buffers must
// stay allocated until they are sent.
type sendQueue struct {
	q       []pending
	touched []*egress // sockets with datagrams queued, in first-queued order

	// Scratch returned by list.
	idx, sizes []int32
}

func newSendQueue(capacity int) sendQueue {
	return sendQueue{
		q:       make([]pending, 0, capacity),
		touched: make([]*egress, 0, 64),
		idx:     make([]int32, capacity),
		sizes:   make([]int32, capacity),
	}
}

// add queues n payload bytes at p (in buffer buf) for o's egress socket
// and reports whether the queue is now full.
func (s *sendQueue) add(o *output, buf int, p *byte, n int) (full bool) {
	i := int32(len(s.q))
	s.q = append(s.q, pending{o: o, p: p, n: int32(n), buf: uint32(buf), next: -1})
	eg := o.eg
	if eg.queued == 0 {
		eg.head = i
		s.touched = append(s.touched, eg)
	} else {
		s.q[eg.tail].next = i
	}
	eg.tail = i
	eg.queued++
	return len(s.q) == cap(s.q)
}

// list returns the datagrams queued for eg, in the order they were added,
// as indexes into s.q and their payload sizes. Both slices are scratch
// space, valid until the next call.
func (s *sendQueue) list(eg *egress) (idx, sizes []int32) {
	k := 0
	for i := eg.head; i >= 0; i = s.q[i].next {
		s.idx[k], s.sizes[k] = i, s.q[i].n
		k++
	}
	return s.idx[:k], s.sizes[:k]
}

// reset empties the queue once every socket's list was sent.
func (s *sendQueue) reset() {
	for _, eg := range s.touched {
		eg.head, eg.tail, eg.queued = -1, -1, 0
	}
	clear(s.touched)
	s.touched = s.touched[:0]
	clear(s.q)
	s.q = s.q[:0]
}

// retryRefused reports whether a send that failed with errno should be
// made again at once: ECONNREFUSED on a UDP socket means the kernel had an
// ICMP port- or protocol-unreachable queued on the socket (a connected
// socket asks for them, ip(7) IP_RECVERR aside) and reported that instead
// of sending, and it clears the error in doing so. A unicast output whose
// destination host runs no UDP listener, such as a relay capturing with
// AF_PACKET, answers every datagram this way, so without a retry every
// datagram after an ICMP error (with UDP GSO, a whole run) would be lost.
// The datagram was not sent, and the retry sends it: only a second
// refusal in a row counts as a failure.
func retryRefused(errno syscall.Errno, retried bool) bool {
	return errno == syscall.ECONNREFUSED && !retried
}
