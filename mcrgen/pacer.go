package mcrgen

import (
	"math"
	"time"
)

// pacer spreads packets over time at a fixed rate. By elapsed time t since
// the start, floor(t·rate) packets are due; a caller asks how many are due
// now, sends them, and sleeps until the next one is.
//
// The schedule is anchored to the start, not to the previous send: a late
// wake-up (timer slack, preemption, a slow sendmmsg) makes the next batch
// larger instead of slowing the stream down, so the average rate over a run
// is exact however coarse the sleeps are. Each call releases at most
// maxBatch packets, which bounds a burst to one sendmmsg.
type pacer struct {
	rate     float64 // packets per second; 0 means no pacing
	maxBatch int
	sent     uint64 // packets reported by done
}

// due returns how many packets may be sent at elapsed time now, at most
// maxBatch.
func (p *pacer) due(now time.Duration) int {
	if p.rate == 0 {
		return p.maxBatch
	}
	allowed := uint64(now.Seconds() * p.rate)
	if allowed <= p.sent {
		return 0
	}
	return int(min(allowed-p.sent, uint64(p.maxBatch)))
}

// wait returns how long after now the next packet is due; 0 if it is due.
func (p *pacer) wait(now time.Duration) time.Duration {
	if p.rate == 0 {
		return 0
	}
	next := time.Duration(math.Ceil(float64(p.sent+1) / p.rate * float64(time.Second)))
	return max(next-now, 0)
}

// done records that n more packets were sent.
func (p *pacer) done(n int) { p.sent += uint64(n) }
