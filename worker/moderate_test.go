package worker

import (
	"testing"
	"time"
)

// TestModerator feeds the moderator steady rates, 100 ms each, and checks
// the nap it settles on: none below the threshold, the time a batch takes
// to arrive above it, capped; once napping, it goes on down to the lower
// threshold.
func TestModerator(t *testing.T) {
	for _, tc := range []struct {
		name string
		pps  []int // one after the other
		want time.Duration
	}{
		{"idle", []int{0}, 0},
		{"1k pps", []int{1_000}, 0},
		{"40k pps", []int{40_000}, 0},
		{"50k pps: a batch of 32 in 640 µs, capped", []int{50_000}, moderateMaxNap},
		{"100k pps: 32 in 320 µs", []int{100_000}, 320 * time.Microsecond},
		{"400k pps: 32 in 80 µs", []int{400_000}, 80 * time.Microsecond},
		{"down from 100k to 40k: still napping", []int{100_000, 40_000}, moderateMaxNap},
		{"down from 100k to 30k: no more", []int{100_000, 30_000}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m moderator
			now, rx := time.Unix(1000, 0), 0.0
			var nap time.Duration
			for _, pps := range tc.pps {
				for range 1000 { // 100 µs apart
					now = now.Add(100 * time.Microsecond)
					rx += float64(pps) / 10_000
					nap = m.observe(now, uint64(rx))
				}
			}
			if d := nap - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("nap %v, want %v", nap, tc.want)
			}
		})
	}
}
