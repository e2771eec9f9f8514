package worker

import (
	"testing"
	"time"
)

// TestModerator feeds the moderator a steady rate for 50 ms and checks the
// nap it settles on: none below the threshold, the time a batch takes to
// arrive above it, capped.
func TestModerator(t *testing.T) {
	for _, tc := range []struct {
		name string
		pps  int
		want time.Duration
	}{
		{"idle", 0, 0},
		{"1k pps", 1_000, 0},
		{"30k pps", 30_000, 0},
		{"50k pps: a batch of 32 in 640 µs, capped", 50_000, moderateMaxNap},
		{"100k pps: 32 in 320 µs", 100_000, 320 * time.Microsecond},
		{"400k pps: 32 in 80 µs", 400_000, 80 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m moderator
			t0 := time.Unix(1000, 0)
			var nap time.Duration
			for step := range 500 { // 100 µs apart
				now := t0.Add(time.Duration(step) * 100 * time.Microsecond)
				nap = m.observe(now, uint64(tc.pps*step/10_000))
			}
			if d := nap - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("nap %v, want %v", nap, tc.want)
			}
		})
	}
}
