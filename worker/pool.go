package worker

// slotSize is the size of one packet buffer: room for the largest IPv6
// packet without a jumbogram option (40-byte header + 65,535-byte payload),
// so any datagram FANOUT_FLAG_DEFRAG can reassemble (IPv4, at most 65,535
// bytes) and any jumbo frame fits whole. A longer packet, which no real link
// delivers, is detected with MSG_TRUNC and counted as malformed. The pool is
// mapped without pre-faulting, so a buffer costs resident memory only for
// the pages packets actually touched: one page for a 1,500-byte frame.
const slotSize = 68 << 10

// bufPool is the worker's packet buffers: one memory region, allocated once
// outside the Go heap, cut into slotSize slots named by index.
type bufPool struct {
	mem []byte
}

// slot returns buffer i, with its capacity limited to the slot.
func (p *bufPool) slot(i int) []byte {
	return p.mem[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
}
