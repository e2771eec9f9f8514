package worker

import (
	"testing"
	"time"
)

// TestModerator feeds the moderator steady rates, 100 ms each, and checks
// the nap it settles on: none below the threshold, the time a batch takes
// to arrive above it, capped by Config.Moderation; once napping, it goes on
// down to the lower threshold; never with moderation off.
func TestModerator(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pps    []int // one after the other
		want   time.Duration
		maxNap time.Duration // Config.Moderation, default when 0
	}{
		{"idle", []int{0}, 0, 0},
		{"1k pps", []int{1_000}, 0, 0},
		{"40k pps", []int{40_000}, 0, 0},
		{"50k pps: a batch of 128 in 2.56 ms, capped", []int{50_000}, DefaultModeration, 0},
		{"200k pps: 128 in 640 µs", []int{200_000}, 640 * time.Microsecond, 0},
		{"400k pps: 128 in 320 µs", []int{400_000}, 320 * time.Microsecond, 0},
		{"down from 200k to 40k: still napping", []int{200_000, 40_000}, DefaultModeration, 0},
		{"down from 200k to 30k: no more", []int{200_000, 30_000}, 0, 0},
		{"moderation off", []int{200_000}, 0, -1},
		{"moderation at most 100 µs", []int{200_000}, 100 * time.Microsecond, 100 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := moderator{maxNap: DefaultModeration}
			if tc.maxNap != 0 {
				m.maxNap = tc.maxNap
			}
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
