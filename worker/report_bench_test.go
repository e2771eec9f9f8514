package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/tracing"
)

// BenchmarkReport measures what one stats snapshot costs the event loop
// (reporter.report; the encoder's work is done outside the time measured):
// every rule changed since the last snapshot (the worst case), optionally
// with a traced rule whose ring holds 100 events.
//
//	go test -run '^$' -bench BenchmarkReport -benchmem ./worker/
func BenchmarkReport(b *testing.B) {
	for _, bc := range []struct {
		rules  int
		traced bool
	}{{1, false}, {1000, false}, {1, true}} {
		name := fmt.Sprintf("rules=%d", bc.rules)
		if bc.traced {
			name += "/traced"
		}
		b.Run(name, func(b *testing.B) {
			db := newRuleDB(newFakeSockets(), testLogger(nil))
			for i := range bc.rules {
				db.add(wrule(fmt.Sprintf("r%d", i), 2, fmt.Sprintf("239.1.%d.%d:5001", i/250, i%250+1),
					"239.2.2.2:6000@3", "239.2.2.3:6000@3"))
			}
			db.commit()
			var t *tracer
			if bc.traced {
				db.setTraces([]controlproto.WorkerTrace{{ID: "r0", Limit: 100, Snaplen: 64}})
				db.commit()
				t = db.traces["r0"]
			}
			payload := make([]byte, 64)
			pipe := &fakePipe{room: 1 << 30}
			rp := newBenchReporter(pipe)
			var c stats.WorkerCounters
			now := time.Unix(1000, 0)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				pipe.buf.Reset()
				for _, r := range db.byID {
					r.packetsIn++
					r.outputs[0].cnt.PacketsOut++
				}
				if t != nil {
					for range 100 {
						if s := t.next(tracing.Received, 0); s != nil {
							s.size = 64
							t.snap(s, payload)
						}
					}
				}
				b.StartTimer()
				rp.report(now, db, &c, stats.RingUsage{})
				rp.complete(db) // the steps the loop would take between batches
				b.StopTimer()
				rp.write(<-rp.jobs, nil) // what the encoder does
				rp.collect(db, &c, nil)
				b.StartTimer()
			}
			if c.StatsDropped != 0 {
				b.Fatalf("%d snapshots dropped", c.StatsDropped)
			}
		})
	}
}

// newBenchReporter returns a reporter without its encoder goroutine, for
// the benchmark to encode each snapshot outside the time it measures.
func newBenchReporter(p *fakePipe) *reporter {
	rp := &reporter{fw: frameWriter{write: p.write}, log: testLogger(nil), started: true}
	rp.jobs, rp.verdicts = make(chan *snapshotBuf, 1), make(chan *snapshotBuf, 1)
	return rp
}
