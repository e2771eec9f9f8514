package worker

import "time"

// Wake-up moderation for frame rings. A frame ring wakes the worker for
// the first packet the kernel writes, which is what keeps latency low at
// low rates; but at tens of thousands of packets a second a worker that
// keeps up is woken for nearly every packet, and each wake-up (a context
// switch, an io_uring_enter, a send per packet instead of one UDP_SEGMENT
// run) costs more CPU than the packet itself. So above moderateAbovePPS the
// worker naps after each batch for as long as moderateBatch packets take to
// arrive at the measured rate, at most moderateMaxNap: the next wake-up
// finds a batch, as a block ring's would, with a fraction of its delay.
// Below the rate it never naps. --busy-poll never naps either.
const (
	moderateAbovePPS = 40_000
	moderateBatch    = 32
	moderateMaxNap   = 500 * time.Microsecond
	// moderateWindow is how long the input rate is measured over.
	moderateWindow = 10 * time.Millisecond
)

// moderator measures the rate of packets the worker received and says how
// long to nap after a batch.
type moderator struct {
	start   time.Time // of the current window
	startRx uint64    // rx_packets at start
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
	m.nap = 0
	if pps >= moderateAbovePPS {
		m.nap = min(time.Duration(moderateBatch/pps*float64(time.Second)), moderateMaxNap)
	}
	return m.nap
}
