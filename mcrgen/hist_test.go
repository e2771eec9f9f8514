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
	tests := []struct {
		name          string
		samples       []uint64
		p50, p99, max uint64
	}{
		{name: "empty"},
		{name: "one", samples: []uint64{42_000}, p50: 42_000, p99: 42_000, max: 42_000},
		{name: "small exact values", samples: []uint64{1, 2, 3, 4}, p50: 2, p99: 4, max: 4},
	}
	var uniform []uint64
	for v := uint64(1); v <= 1000; v++ {
		uniform = append(uniform, v*1000) // 1..1000 µs
	}
	tests = append(tests, struct {
		name          string
		samples       []uint64
		p50, p99, max uint64
	}{name: "uniform 1..1000 µs", samples: uniform, p50: 500_000, p99: 990_000, max: 1_000_000})
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
			if h.max != tt.max {
				t.Errorf("max %d, want %d", h.max, tt.max)
			}
		})
	}
}
