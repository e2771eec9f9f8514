package mcrgen

import (
	"math/rand/v2"
	"testing"
)

func TestHistogramBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prev := -1
	for v := uint64(0); v < 1<<14; v++ {
		b := bucketOf(v)
		if b < prev || b > prev+1 {
			t.Fatalf("bucketOf(%d) = %d after %d: buckets must be contiguous", v, b, prev)
		}
		prev = b
	}
	for range 100_000 {
		v := rng.Uint64() >> rng.IntN(64)
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside 0..%d", v, b, histBuckets-1)
		}
		mid := bucketMid(b)
		diff := max(mid, v) - min(mid, v)
		if diff > v>>histSubBits {
			t.Fatalf("bucketMid(bucketOf(%d)) = %d, off by more than 1/%d", v, mid, 1<<histSubBits)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	// uniform returns 1..n µs in ns.
	uniform := func(n uint64) []uint64 {
		var s []uint64
		for v := uint64(1); v <= n; v++ {
			s = append(s, v*1000)
		}
		return s
	}
	// tail returns 9,990 samples of 100 µs and 10 of 5 ms: only p99.9 and
	// the maximum see the tail.
	tail := func() []uint64 {
		s := make([]uint64, 0, 10_000)
		for range 9_990 {
			s = append(s, 100_000)
		}
		for range 10 {
			s = append(s, 5_000_000)
		}
		return s
	}
	tests := []struct {
		name                string
		samples             []uint64
		p50, p99, p999, max uint64
	}{
		{name: "empty"},
		{name: "one", samples: []uint64{42_000}, p50: 42_000, p99: 42_000, p999: 42_000, max: 42_000},
		{name: "small exact values", samples: []uint64{1, 2, 3, 4}, p50: 2, p99: 4, p999: 4, max: 4},
		{name: "uniform 1..1000 µs", samples: uniform(1000), p50: 500_000, p99: 990_000, p999: 999_000, max: 1_000_000},
		{name: "uniform 1..10000 µs", samples: uniform(10_000), p50: 5_000_000, p99: 9_900_000, p999: 9_990_000, max: 10_000_000},
		{name: "a tail of 1 in 1000", samples: tail(), p50: 100_000, p99: 100_000, p999: 100_000, max: 5_000_000},
		{name: "a tail of 1 in 1000 plus one", samples: append(tail(), 5_000_000), p50: 100_000, p99: 100_000, p999: 5_000_000, max: 5_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.samples {
				h.record(v)
			}
			check := func(what string, got, want uint64) {
				if diff := max(got, want) - min(got, want); diff > want>>histSubBits {
					t.Errorf("%s %d, want %d within 1/%d", what, got, want, 1<<histSubBits)
				}
			}
			check("p50", h.quantile(0.5), tt.p50)
			check("p99", h.quantile(0.99), tt.p99)
			check("p99.9", h.quantile(0.999), tt.p999)
			if h.max != tt.max {
				t.Errorf("max %d, want %d", h.max, tt.max)
			}
		})
	}
}
