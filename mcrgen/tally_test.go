package mcrgen

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestTally feeds two interleaved streams with loss, a duplicate and a
// reordering, plus corrupt and empty datagrams, and checks the result line.
func TestTally(t *testing.T) {
	const sent = 1_000_000_000_000 // sender clock, ns
	payload := func(stream uint16, seq uint64) []byte {
		p := make([]byte, 100)
		FillPayload(p, Header{Stream: stream, Seq: seq, SentUnixNano: sent})
		return p
	}
	corrupt := payload(1, 99)
	corrupt[50] ^= 1
	arrivals := [][]byte{
		payload(1, 0), payload(2, 0),
		payload(1, 1), payload(2, 2), // stream 2 seq 1 comes later
		payload(1, 1), // duplicate
		payload(2, 1), // reordered
		payload(1, 4), // 2 and 3 lost
		corrupt,
		[]byte("short"),
		{}, // empty: unverified
		payload(2, 3),
	}
	tl := newTally()
	for i, p := range arrivals {
		// Arrivals 10 µs apart, latency 50 µs + 10 µs per arrival.
		tl.add(p, sent+50_000+int64(i)*10_000)
	}
	got := tl.result()
	want := RecvResult{
		Received:   11,
		Lost:       2,
		Duplicates: 1,
		Reordered:  1,
		Corrupt:    2,
		PPS:        100_000, // 10 intervals of 10 µs
		Bytes:      9*100 + 5,
		Unverified: 1,
		Streams:    2,
		// Verified latencies 50, 60, 70, 80, 90, 100, 110, 150 µs: p50 is
		// the 4th, p99 and p99.9 the 8th, each as the middle of its 3 %
		// bucket.
		LatencyUS: Latency{P50: 80.9, P99: 149.5, P999: 149.5, Max: 150},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
}

func TestTallyNegativeLatencyCountsAsZero(t *testing.T) {
	p := make([]byte, HeaderSize)
	FillPayload(p, Header{SentUnixNano: 2_000})
	tl := newTally()
	tl.add(p, 1_000) // sender clock ahead
	if got := tl.result().LatencyUS; got != (Latency{}) {
		t.Errorf("latency %+v, want zeros", got)
	}
}

// TestTallyLatencyQuantiles checks that each quantile of the result line
// comes from its own rank, with 2,000 datagrams whose latencies put ranks
// 1,000, 1,980, 1,998 and 2,000 in different tiers.
func TestTallyLatencyQuantiles(t *testing.T) {
	const sent = 1_000_000_000_000
	tiers := []struct {
		n         int
		latencyUS int64
	}{{1970, 100}, {20, 1000}, {9, 3000}, {1, 5000}}
	tl := newTally()
	p := make([]byte, HeaderSize)
	var seq uint64
	for _, tier := range tiers {
		for range tier.n {
			FillPayload(p, Header{Seq: seq, SentUnixNano: sent})
			tl.add(p, sent+tier.latencyUS*1000)
			seq++
		}
	}
	// Within 3 %: the histogram's bucket width.
	want := Latency{P50: 100, P99: 1000, P999: 3000, Max: 5000}
	if diff := cmp.Diff(want, tl.result().LatencyUS, cmpopts.EquateApprox(0.03, 0)); diff != "" {
		t.Errorf("latency (-want +got):\n%s", diff)
	}
}
