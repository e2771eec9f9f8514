package relaysock

import "fmt"

// Ring is the geometry of an ingress socket's receive ring (packet(7)
// PACKET_RX_RING), Blocks blocks of BlockSize bytes, in one of two kinds:
//
//   - FrameSize 0: a TPACKET_V3 block ring. The kernel packs packets one
//     after the other into a block and hands the block to the worker when
//     it is full or has been open for TimeoutMS milliseconds (the block's
//     retire timeout): few wake-ups under load, but at low rates a packet
//     waits for the timer.
//   - FrameSize > 0: a TPACKET_V2 frame ring of BlockSize/FrameSize
//     frames per block, one packet per frame, each handed over the moment
//     it is written: the worker wakes on the first packet, and under load
//     finds many frames ready at once. A packet larger than a frame is
//     copied whole to the socket's receive queue as well
//     (PACKET_COPY_THRESH); its frame says so (TP_STATUS_COPY). TimeoutMS
//     is unused.
type Ring struct {
	Blocks    int `json:"blocks"`
	BlockSize int `json:"block_size"`
	TimeoutMS int `json:"timeout_ms,omitempty"`
	FrameSize int `json:"frame_size,omitempty"`
}

// Frames returns the number of frames of a frame ring, 0 for a block ring.
func (r *Ring) Frames() int {
	if r.FrameSize <= 0 {
		return 0
	}
	return r.Blocks * (r.BlockSize / r.FrameSize)
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
	// MinRingFrameSize holds a frame's headers and a minimum-size
	// Ethernet frame; frames are multiples of 16 bytes
	// (TPACKET_ALIGNMENT). MaxRingFrames is what a send's buffer id can
	// name (16 bits).
	MinRingFrameSize = 256
	MaxRingFrames    = 1 << 16
)

// Default frame rings. InputFrames frames of 2 KiB (64 MiB) are divided
// among an input's workers, each getting between MinDefaultFrames and
// MaxDefaultFrames (DefaultFrames): 32 MiB per input with one worker,
// 64 MiB with two to eight, 8 MiB a worker beyond; a worker that has
// an input to itself holds 80 ms of it at 200,000 packets/s, and a host
// with many workers, each with a share of the traffic, does not pay
// gigabytes. With 4,096 or 8,192 frames a generator's bursts at its
// maximum rate overflowed the ring of a worker whose core was half idle on
// average: 1.1–8.5 % lost at 1→4 and 150k–200k pps against 0–0.7 % with
// 16,384 (docs/PERFORMANCE.md).
const (
	InputFrames      = 32768
	MinDefaultFrames = 4096
	MaxDefaultFrames = 16384
)

// DefaultFrames returns the default number of frames of each worker's
// ring for an input when workers workers share it.
func DefaultFrames(workers int) int {
	return min(max(InputFrames/max(workers, 1), MinDefaultFrames), MaxDefaultFrames)
}

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
	case r.FrameSize < 0 || r.FrameSize > 0 && (r.FrameSize < MinRingFrameSize || r.FrameSize%16 != 0 || r.BlockSize%r.FrameSize != 0):
		return fmt.Errorf("receive ring: frame size %d: want a multiple of 16 from %d bytes that divides the block size %d",
			r.FrameSize, MinRingFrameSize, r.BlockSize)
	case r.Frames() > MaxRingFrames:
		return fmt.Errorf("receive ring: %d frames: want at most %d", r.Frames(), MaxRingFrames)
	case r.FrameSize == 0 && (r.TimeoutMS < 1 || r.TimeoutMS > MaxRingTimeoutMS):
		return fmt.Errorf("receive ring: block timeout %d ms: want 1 to %d", r.TimeoutMS, MaxRingTimeoutMS)
	}
	return nil
}
