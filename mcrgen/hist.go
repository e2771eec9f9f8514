package mcrgen

import (
	"math"
	"math/bits"
)

// Latency histogram: log-linear buckets, exact below 2^(histSubBits+1) ns
// and with 2^histSubBits buckets per power of two above, so a quantile is
// off by less than 1/2^histSubBits (3 %) of its value. The whole uint64
// range fits in a fixed array: memory does not grow with the samples.
const (
	histSubBits = 5
	histBuckets = (64-histSubBits)<<histSubBits + 1<<histSubBits
)

// histogram counts non-negative durations in nanoseconds.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

func (h *histogram) record(v uint64) {
	h.counts[bucketOf(v)]++
	h.n++
	h.max = max(h.max, v)
}

// bucketOf maps v to its bucket: v itself below 64, else
// shift·32 + (v >> shift) where shift leaves v's top 6 bits.
func bucketOf(v uint64) int {
	if v < 1<<(histSubBits+1) {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	return shift<<histSubBits + int(v>>shift)
}

// bucketMid returns the middle of bucket b's range of values.
func bucketMid(b int) uint64 {
	if b < 1<<(histSubBits+1) {
		return uint64(b)
	}
	shift := b>>histSubBits - 1
	lo := uint64(b-shift<<histSubBits) << shift
	return lo + (uint64(1)<<shift)/2
}

// quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the value of the ceil(q·n)-th smallest sample, as the middle of its
// bucket but never above the maximum; 0 without samples.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := min(max(uint64(math.Ceil(q*float64(h.n))), 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketMid(b), h.max)
		}
	}
	return h.max
}
