package worker

// maxHdr is the room for the IP and UDP headers of a transparent output's
// datagram: 40 + 8 bytes for IPv6, 20 + 8 for IPv4.
const maxHdr = 48

// pending is one datagram waiting to be sent: n payload bytes at p, inside
// packet buffer buf, for output o. p points into the backend's packet
// buffers, which live outside the Go heap.
type pending struct {
	o    *output
	p    *byte
	n    int32
	buf  uint32 // a pool slot, or a ring block (ringBufBit)
	next int32  // in a sendQueue: the next datagram for the same dest; -1: none
	// hdrLen is the length of the datagram's IP and UDP headers, in the
	// queue's hdrs, for a transparent output; 0 for the others.
	hdrLen uint8
}

// sendQueue collects the sends of one receive batch per dest, in arrival
// order, so that each dest's runs of equal-size datagrams can leave as
// single UDP_SEGMENT sends (gsoLimits.run). Its capacity is fixed at
// creation and nothing in it allocates once touched has grown to the
// number of dests in use: the backend flushes it when add reports it full
// and at the end of every receive batch. The datagrams' buffers must stay
// allocated until they are sent.
type sendQueue struct {
	q       []pending
	hdrs    [][maxHdr]byte // hdrs[i]: the headers of q[i], when it has any
	touched []*dest        // dests with datagrams queued, in first-queued order

	// Scratch returned by list.
	idx, sizes []int32
}

func newSendQueue(capacity int) sendQueue {
	return sendQueue{
		q:       make([]pending, 0, capacity),
		hdrs:    make([][maxHdr]byte, capacity),
		touched: make([]*dest, 0, 64),
		idx:     make([]int32, capacity),
		sizes:   make([]int32, capacity),
	}
}

// add queues n payload bytes at p (in buffer buf) for o, which is open,
// with hdr as its headers when o is transparent (copied; at most maxHdr
// bytes), and reports whether the queue is now full.
func (s *sendQueue) add(o *output, buf int, p *byte, n int, hdr []byte) (full bool) {
	i := int32(len(s.q))
	s.q = append(s.q, pending{o: o, p: p, n: int32(n), buf: uint32(buf), next: -1, hdrLen: uint8(len(hdr))})
	copy(s.hdrs[i][:], hdr)
	d := o.d
	if d.queued == 0 {
		d.head = i
		s.touched = append(s.touched, d)
	} else {
		s.q[d.tail].next = i
	}
	d.tail = i
	d.queued++
	return len(s.q) == cap(s.q)
}

// list returns the datagrams queued for d, in the order they were added,
// as indexes into s.q and their payload sizes. Both slices are scratch
// space, valid until the next call.
func (s *sendQueue) list(d *dest) (idx, sizes []int32) {
	k := 0
	for i := d.head; i >= 0; i = s.q[i].next {
		s.idx[k], s.sizes[k] = i, s.q[i].n
		k++
	}
	return s.idx[:k], s.sizes[:k]
}

// header returns the headers of datagram i of the queue.
func (s *sendQueue) header(i int32) []byte {
	return s.hdrs[i][:s.q[i].hdrLen]
}

// empty reports whether nothing is queued.
func (s *sendQueue) empty() bool { return len(s.q) == 0 }

// reset empties the queue once every dest's list was sent.
func (s *sendQueue) reset() {
	for _, d := range s.touched {
		d.head, d.tail, d.queued = -1, -1, 0
	}
	clear(s.touched)
	s.touched = s.touched[:0]
	clear(s.q)
	s.q = s.q[:0]
}
