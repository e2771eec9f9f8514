package worker

import "time"

// Wake-up moderation for frame rings. A frame ring wakes the worker for
// the first packet the kernel writes, which is what keeps latency low at
// low rates; but at tens of thousands of packets a second a worker that
// keeps up is woken for nearly every packet, and each wake-up (a context
// switch, an io_uring_enter, a send per packet instead of one UDP_SEGMENT
// run) costs more CPU than the packet itself. So from moderateAbovePPS on
// the worker naps after each batch for as long as moderateBatch packets
// take to arrive at the measured rate, at most Config.Moderation (1 ms by
// default, the block ring's timer): the next wake-up finds a batch, as a
// block ring's would. Measured on a 2-vCPU VM at 50,000 and 100,000
// packets/s, naps of up to 0.5 ms for 32 packets cost 1.2–1.45× the block
// ring's CPU per packet; up to 1 ms for 128 packets, 0.92–1.35× (the
// most at 1→1 and 50,000 packets/s). Below 128,000 packets/s the nap is
// the 1 ms cap. It stops napping when the rate falls below
// moderateBelowPPS: the gap keeps a paced stream just under the
// threshold, whose rate jitters from one window to the next, from napping
// now and then. --busy-poll never naps.
const (
	moderateAbovePPS = 45_000
	moderateBelowPPS = 35_000
	moderateBatch    = 128
	// moderateWindow is how long the input rate is measured over.
	moderateWindow = 20 * time.Millisecond
)

// moderator measures the rate of packets the worker received and says how
// long to nap after a batch.
type moderator struct {
	maxNap  time.Duration // Config.Moderation; negative: never nap
	start   time.Time     // of the current window
	startRx uint64        // rx_packets at start
	on      bool          // napping
	nap     time.Duration
}

// observe takes the time and the rx_packets counter after a batch and
// returns how long to nap before the next wait: 0 below the rate.
func (m *moderator) observe(now time.Time, rx uint64) time.Duration {
	if m.start.IsZero() || rx < m.startRx {
		m.start, m.startRx = now, rx
		return m.nap
	}
	dt := now.Sub(m.start)
	if dt < moderateWindow {
		return m.nap
	}
	pps := float64(rx-m.startRx) / dt.Seconds()
	m.start, m.startRx = now, rx
	m.on = m.maxNap > 0 && (pps >= moderateAbovePPS || m.on && pps >= moderateBelowPPS)
	m.nap = 0
	if m.on {
		m.nap = min(time.Duration(moderateBatch/pps*float64(time.Second)), m.maxNap)
	}
	return m.nap
}
