package mcrgen

import (
	"math"
	"net"
	"net/netip"
)

// RecvResult is what `mcrgen recv` prints as its JSON line; scripts rely on
// the first six fields (docs/cli.md), which do not change.
type RecvResult struct {
	// Received counts every datagram read, duplicates and corrupt ones
	// included.
	Received uint64 `json:"received"`
	// Lost counts sequence numbers missing between the lowest and the
	// highest received, summed over streams.
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	// Reordered counts datagrams that arrived after a higher sequence
	// number of their stream.
	Reordered uint64 `json:"reordered"`
	// Corrupt counts datagrams that failed ParsePayload: too short, wrong
	// magic, checksum or pattern. They are not in the sequence accounting.
	Corrupt uint64 `json:"corrupt"`
	// PPS is the receive rate: datagrams after the first divided by the
	// time between the first and the last.
	PPS float64 `json:"pps"`
	// Bytes sums the payload bytes of all datagrams received.
	Bytes uint64 `json:"bytes"`
	// Unverified counts empty datagrams (`send --size 0`): received, but
	// without a header to check or to sequence.
	Unverified uint64 `json:"unverified"`
	// Streams counts the distinct stream ids seen.
	Streams int `json:"streams"`
	// Sources counts the datagrams received from each source address and
	// port ("10.0.0.1:5001", "[fd00::1]:5001"): a stream that reaches a
	// receiver through a relay should come from one.
	Sources map[string]uint64 `json:"sources,omitempty"`
	// LatencyUS is the one-way latency of verified datagrams in
	// microseconds, from the sender's to the receiver's wall clock:
	// meaningful when both run on one host (or have synchronised clocks).
	LatencyUS Latency `json:"latency_us"`
}

// Latency summarises one-way latencies in microseconds. Each quantile is
// the nearest-rank sample, within 3 % (see histogram); P999 needs a few
// thousand samples to mean more than the maximum of a handful.
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// tally accounts received datagrams. It is not safe for concurrent use.
type tally struct {
	received, corrupt, unverified, bytes uint64
	streams                              map[uint16]*seqTracker
	sources                              map[netip.AddrPort]uint64
	latency                              histogram
	firstNano, lastNano                  int64 // receive times of the first and the last datagram
}

func newTally() *tally {
	return &tally{streams: make(map[uint16]*seqTracker), sources: make(map[netip.AddrPort]uint64)}
}

// from accounts the source of one datagram; an unknown one (not UDP) is
// not counted.
func (t *tally) from(a net.Addr) {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		t.sources[netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())]++
	}
}

// add accounts one datagram's payload p received at nowNano (Unix ns).
func (t *tally) add(p []byte, nowNano int64) {
	if t.received == 0 {
		t.firstNano = nowNano
	}
	t.lastNano = nowNano
	t.received++
	t.bytes += uint64(len(p))
	if len(p) == 0 {
		t.unverified++
		return
	}
	h, err := ParsePayload(p)
	if err != nil {
		t.corrupt++
		return
	}
	s := t.streams[h.Stream]
	if s == nil {
		s = new(seqTracker)
		t.streams[h.Stream] = s
	}
	s.add(h.Seq)
	// A sender clock ahead of ours would give a negative latency: count it
	// as 0 rather than as a huge unsigned value.
	t.latency.record(uint64(max(nowNano-h.SentUnixNano, 0)))
}

// result returns the counts so far.
func (t *tally) result() RecvResult {
	r := RecvResult{
		Received:   t.received,
		Corrupt:    t.corrupt,
		Unverified: t.unverified,
		Bytes:      t.bytes,
		Streams:    len(t.streams),
		LatencyUS: Latency{
			P50:  micros(t.latency.quantile(0.50)),
			P99:  micros(t.latency.quantile(0.99)),
			P999: micros(t.latency.quantile(0.999)),
			Max:  micros(t.latency.max),
		},
	}
	if len(t.sources) > 0 {
		r.Sources = make(map[string]uint64, len(t.sources))
		for ap, n := range t.sources {
			r.Sources[ap.String()] = n
		}
	}
	for _, s := range t.streams {
		r.Lost += s.lost()
		r.Duplicates += s.duplicates
		r.Reordered += s.reordered
	}
	if span := t.lastNano - t.firstNano; t.received > 1 && span > 0 {
		r.PPS = round1(float64(t.received-1) / (float64(span) / 1e9))
	}
	return r
}

// micros converts nanoseconds to microseconds with one decimal.
func micros(ns uint64) float64 { return round1(float64(ns) / 1e3) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }
