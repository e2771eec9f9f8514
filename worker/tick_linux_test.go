package worker

import (
	"fmt"
	"os"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestTickInSitu runs the worker in the test process while a stream of
// 10,000 datagrams a second passes through it, and logs how long each
// periodic tick (the stats snapshot among it) kept the event loop from
// its packets, and what the Go GC did meanwhile. The stats interval is
// 100 ms so that a few seconds give tens of ticks; a tick costs the same
// whatever the interval.
//
//	go test -count=1 -run TestTickInSitu -v ./worker/
func TestTickInSitu(t *testing.T) {
	netnstest.RequireRoot(t)
	tp := newTopo(t)
	for _, traced := range []bool{false, true} {
		t.Run(fmt.Sprintf("traced=%v", traced), func(t *testing.T) {
			var mu sync.Mutex
			var ticks, reps []time.Duration
			tickObserver = func(tick, report time.Duration) {
				mu.Lock()
				ticks, reps = append(ticks, tick), append(reps, report)
				mu.Unlock()
			}
			t.Cleanup(func() { tickObserver = nil })
			w := startInProcessEvery(t, tp, BackendUring, 100*time.Millisecond)
			rules := []controlproto.WorkerRule{tp.rule("tick", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1", "239.2.2.3:6000@r2")}
			cmds, err := controlproto.SyncCommands(rules, 0)
			mustNoErr(t, err)
			w.send(cmds...)
			if traced {
				w.send(controlproto.WorkerCommand{Type: controlproto.WTrace,
					Traces: []controlproto.WorkerTrace{{ID: "tick", Limit: 1000, Snaplen: 64}}})
			}
			netnstest.WaitFor(t, 5*time.Second, "a snapshot", func() bool { return w.seenSnapshots() > 0 })
			var got atomic.Int64
			newCountingSink(t, tp.sink1, "k1", "239.2.2.2:6000", &got)

			const n = 30000
			sender := tp.src.Command(os.Args[0], "-test.run=^$")
			sender.Env = append(os.Environ(), "MCR_TEST_ROLE=sender",
				fmt.Sprintf("MCR_TEST_SEND=s0 10.0.1.1 239.1.1.1:5001 1 %d 200 10000 1", n))
			mu.Lock()
			ticks, reps = ticks[:0], reps[:0]
			mu.Unlock()
			gc0 := gcMetrics()
			if out, err := sender.CombinedOutput(); err != nil {
				t.Fatalf("sender: %v: %s", err, out)
			}
			gc1 := gcMetrics()
			w.shutdown(t)
			if rx := w.counters().RxPackets; rx == 0 {
				t.Fatal("the worker received nothing")
			}

			mu.Lock()
			d, r := slices.Clone(ticks), slices.Clone(reps)
			mu.Unlock()
			if len(d) < 10 {
				t.Fatalf("%d ticks in 3 s at a 100 ms interval", len(d))
			}
			slices.Sort(d)
			slices.Sort(r)
			t.Logf("%d of %d datagrams relayed to the sink", got.Load(), n)
			t.Logf("%d ticks during the stream: median %v, p90 %v, max %v; of which the snapshot: median %v, p90 %v, max %v",
				len(d), d[len(d)/2], d[len(d)*9/10], d[len(d)-1], r[len(r)/2], r[len(r)*9/10], r[len(r)-1])
			t.Logf("GC during the stream: %d cycles, stop-the-world pauses total %v (max bucket %v), assist CPU %v",
				gc1.cycles-gc0.cycles, gc1.pauseTotal-gc0.pauseTotal, gc1.pauseMax, gc1.assist-gc0.assist)
		})
	}
}

// gcState is what the process's GC did so far.
type gcState struct {
	cycles     uint64
	pauseTotal time.Duration // summed from the pause histogram's bucket bounds
	pauseMax   time.Duration // upper bound of the highest non-empty bucket
	assist     time.Duration
}

func gcMetrics() gcState {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/sched/pauses/total/gc:seconds"},
		{Name: "/cpu/classes/gc/mark/assist:cpu-seconds"}}
	metrics.Read(s)
	g := gcState{cycles: s[0].Value.Uint64(), assist: time.Duration(s[2].Value.Float64() * 1e9)}
	h := s[1].Value.Float64Histogram()
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo := max(h.Buckets[i], 0)
		g.pauseTotal += time.Duration(float64(c) * lo * 1e9)
		g.pauseMax = time.Duration(h.Buckets[i+1] * 1e9)
	}
	return g
}
