package worker

// copyBufBit marks, together with ringBufBit, a buffer id that names a slot
// of the worker's copy buffers (copyPool) rather than a block of a ring:
// ring ids stay below 1<<14, so the bit is never part of one.
const copyBufBit = 1 << 30

// copySlots is the number of copy buffers: packets larger than a frame of
// a frame ring are rare (a UDP GSO aggregate from a local sender, a
// reassembled datagram, a jumbo frame), and each is held only until its
// sends complete.
const copySlots = 32

// copyPool holds the packets a frame ring could not take whole: the kernel
// queued each on the socket's receive queue as well as the start of it in
// a frame marked TP_STATUS_COPY (relaysock.Ring), and the worker reads it
// into one of these buffers when it meets that frame, so it is relayed in
// its place among the frames. A buffer is held while its packet is
// dispatched (until endBatch) and by each send pointing into it.
type copyPool struct {
	pool  bufPool // copySlots buffers of slotSize bytes; nil until first use
	refs  [copySlots]int32
	free  []int
	batch []int // taken since the last endBatch
	// mapFailed: mapping pool failed; tried again at the next socket
	// retry.
	mapFailed bool
}

// get returns a free buffer, held once for its dispatch, or -1.
func (c *copyPool) get() int {
	if len(c.free) == 0 {
		return -1
	}
	s := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	c.refs[s] = 1
	c.batch = append(c.batch, s)
	return s
}

// copyID returns the buffer id of copy buffer s.
func copyID(s int) uint32 { return ringBufBit | copyBufBit | uint32(s) }

// isCopy reports whether buffer id names a copy buffer.
func isCopy(id uint32) bool { return id&(ringBufBit|copyBufBit) == ringBufBit|copyBufBit }

func (c *copyPool) hold(id uint32) { c.refs[id&0xffff]++ }

func (c *copyPool) release(id uint32) {
	s := int(id & 0xffff)
	if c.refs[s]--; c.refs[s] == 0 {
		c.free = append(c.free, s)
	}
}

// endBatch drops the dispatch hold of every buffer taken since the last
// call: the backend has handed their sends over (or, for the mmsg backend,
// made them).
func (c *copyPool) endBatch() {
	for _, s := range c.batch {
		c.release(copyID(s))
	}
	c.batch = c.batch[:0]
}
