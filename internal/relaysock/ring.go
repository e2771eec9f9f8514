package relaysock

import "fmt"

// Ring is the geometry of an ingress socket's TPACKET_V3 receive ring
// (packet(7) PACKET_RX_RING): Blocks blocks of BlockSize bytes, which the
// kernel fills one after the other with packets and hands to the worker
// when one is full or has been open for TimeoutMS milliseconds (the
// block's retire timeout).
type Ring struct {
	Blocks    int `json:"blocks"`
	BlockSize int `json:"block_size"`
	TimeoutMS int `json:"timeout_ms"`
}

// RingPrivSize is the size of every ring block's private area
// (tpacket_req3.tp_sizeof_priv), which the kernel reserves between the
// block header and the first packet and never writes: the worker keeps
// there how far it got with the block, so that the next worker of the slot,
// which inherits the ring with the socket, resumes where it stopped
// (worker's ring takeover).
const RingPrivSize = 16

// Limits on what a worker may ask for: the ring is kernel memory the
// supervisor allocates on the worker's behalf.
const (
	// MinRingBlockSize holds the largest datagram FANOUT_FLAG_DEFRAG
	// reassembles or a UDP GSO aggregate (64 KiB of IP packet) with the
	// ring's per-packet and per-block headers and the block's private
	// area: a smaller block would truncate those.
	MinRingBlockSize = 128 << 10
	MaxRingBlockSize = 4 << 20
	MaxRingBlocks    = 4096
	MaxRingBytes     = 256 << 20
	MaxRingTimeoutMS = 1000
)

// Validate returns an error naming the first field out of range.
func (r *Ring) Validate() error {
	switch {
	case r.BlockSize < MinRingBlockSize || r.BlockSize > MaxRingBlockSize || r.BlockSize&(r.BlockSize-1) != 0:
		return fmt.Errorf("receive ring: block size %d: want a power of two from %d to %d bytes",
			r.BlockSize, MinRingBlockSize, MaxRingBlockSize)
	case r.Blocks < 1 || r.Blocks > MaxRingBlocks:
		return fmt.Errorf("receive ring: %d blocks: want 1 to %d", r.Blocks, MaxRingBlocks)
	case r.Blocks*r.BlockSize > MaxRingBytes:
		return fmt.Errorf("receive ring: %d blocks of %d bytes exceed %d MiB", r.Blocks, r.BlockSize, MaxRingBytes>>20)
	case r.TimeoutMS < 1 || r.TimeoutMS > MaxRingTimeoutMS:
		return fmt.Errorf("receive ring: block timeout %d ms: want 1 to %d", r.TimeoutMS, MaxRingTimeoutMS)
	}
	return nil
}
