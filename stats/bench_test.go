package stats

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkObserve feeds snapshots of 1,000 changed rules, the
// supervisor's steady state under traffic on many rules.
func BenchmarkObserve(b *testing.B) {
	a := NewAggregator(interval)
	s := snap(0, 100, 0)
	for i := range 1000 {
		s.Rules = append(s.Rules, rule(fmt.Sprintf("r%d", i), 0, 0, 0, 0))
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Seq++
		for i := range s.Rules {
			r := &s.Rules[i]
			r.PacketsIn += 10
			r.BytesIn += 1000
			r.Outputs[0].PacketsOut += 10
			r.Outputs[1].PacketsOut += 10
		}
		now := at(time.Duration(s.Seq) * interval)
		s.UnixNano = now.UnixNano()
		a.Observe(&s, now)
	}
	b.ReportMetric(float64(len(s.Rules))*float64(b.N)/b.Elapsed().Seconds(), "rules/s")
}
