package stats

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const interval = time.Second

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one event fed to the aggregator: a snapshot observed at At (taken
// at the same instant), or, when Remove is set, RemoveRule at At.
type step struct {
	At     time.Duration
	Snap   Snapshot
	Remove string
}

// snap builds a snapshot of worker w, process pid, number seq.
func snap(w, pid int, seq uint64, rules ...RuleCounters) Snapshot {
	return Snapshot{Worker: w, PID: pid, Seq: seq, Rules: rules}
}

// rule builds rule counters with one output per outs value (packets out,
// bytes out = 100 × packets).
func rule(id string, packets, bytes uint64, outs ...uint64) RuleCounters {
	rc := RuleCounters{ID: id, PacketsIn: packets, BytesIn: bytes, Outputs: []OutputCounters{}}
	for _, p := range outs {
		rc.Outputs = append(rc.Outputs, OutputCounters{PacketsOut: p, BytesOut: 100 * p})
	}
	return rc
}

func withCounters(s Snapshot, c WorkerCounters) Snapshot {
	s.Counters = c
	return s
}

func run(a *Aggregator, steps []step) {
	for _, s := range steps {
		now := at(s.At)
		if s.Remove != "" {
			a.clock = func() time.Time { return now }
			a.RemoveRule(s.Remove)
			continue
		}
		snap := s.Snap
		snap.UnixNano = now.UnixNano()
		a.Observe(&snap, now)
	}
}

var (
	destsA      = []string{"239.2.2.2:6000@eth1", "[ff3e::1]:6000@eth2"}
	destsB      = []string{"10.1.0.50:6000@eth1"}
	descA       = desc("a", destsA...)
	descB       = desc("b", destsB...)
	twoWorkers  = []WorkerDesc{{Worker: 0, Core: 0}, {Worker: 1, Core: 1}}
	zeroOutputs = func(dests ...string) []OutputReport {
		out := []OutputReport{}
		for _, d := range dests {
			out = append(out, OutputReport{Destination: d})
		}
		return out
	}
)

// desc describes rule id with outputs to dests, all active.
func desc(id string, dests ...string) RuleDesc {
	d := RuleDesc{ID: id, State: "active"}
	for _, dest := range dests {
		d.Outputs = append(d.Outputs, OutputDesc{Destination: dest, State: "active"})
	}
	return d
}

func outputs(dests []string, packets ...uint64) []OutputReport {
	out := []OutputReport{}
	for i, d := range dests {
		out = append(out, OutputReport{Destination: d, PacketsOut: packets[i], BytesOut: 100 * packets[i]})
	}
	return out
}

func TestAggregatorReport(t *testing.T) {
	tests := []struct {
		name     string
		steps    []step
		rules    []RuleDesc
		workers  []WorkerDesc
		reportAt time.Duration
		want     Report
	}{
		{
			name:    "nothing observed",
			rules:   []RuleDesc{descA},
			workers: twoWorkers,
			want: Report{
				Rules:   []RuleReport{{ID: "a", Outputs: zeroOutputs(destsA...)}},
				Workers: []WorkerReport{{Worker: 0, Core: 0}, {Worker: 1, Core: 1}},
			},
		},
		{
			name: "two workers summed",
			steps: []step{
				{At: 0, Snap: withCounters(snap(0, 100, 1, rule("a", 10, 1000, 10, 9)), WorkerCounters{RxPackets: 12, NoMatch: 2, KernelDrops: 3})},
				{At: 0, Snap: withCounters(snap(1, 200, 1, rule("a", 5, 500, 5, 5), rule("b", 7, 70, 7)), WorkerCounters{RxPackets: 12, KernelDrops: 4})},
			},
			rules:   []RuleDesc{descB, descA},
			workers: twoWorkers,
			want: Report{
				Rules: []RuleReport{
					{ID: "b", PacketsIn: 7, BytesIn: 70, Outputs: outputs(destsB, 7)},
					{ID: "a", PacketsIn: 15, BytesIn: 1500, Outputs: outputs(destsA, 15, 14)},
				},
				Workers: []WorkerReport{
					{Worker: 0, Core: 0, WorkerCounters: WorkerCounters{RxPackets: 12, NoMatch: 2, KernelDrops: 3}},
					{Worker: 1, Core: 1, WorkerCounters: WorkerCounters{RxPackets: 12, KernelDrops: 4}},
				},
				Totals: Totals{PacketsIn: 22, PacketsOut: 36, KernelDrops: 7},
			},
		},
		{
			name: "absent rule keeps its counters",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 10, 1000, 10, 10))},
				{At: interval, Snap: snap(0, 100, 2)},
			},
			rules:    []RuleDesc{descA},
			reportAt: interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 10, BytesIn: 1000, Outputs: outputs(destsA, 10, 10)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 10, PacketsOut: 20},
			},
		},
		{
			name: "restart keeps totals",
			steps: []step{
				{At: 0, Snap: withCounters(snap(0, 100, 1, rule("a", 1000, 100000, 1000, 1000)), WorkerCounters{RxPackets: 1000, KernelDrops: 5})},
				{At: interval, Snap: withCounters(snap(0, 100, 2, rule("a", 2000, 200000, 2000, 2000)), WorkerCounters{RxPackets: 2000, KernelDrops: 6})},
				// New process: counters start again, and its first snapshot
				// has no rate.
				{At: 2 * interval, Snap: withCounters(snap(0, 101, 1, rule("a", 10, 1000, 10, 10)), WorkerCounters{RxPackets: 10, KernelDrops: 1})},
			},
			rules:    []RuleDesc{descA},
			workers:  twoWorkers[:1],
			reportAt: 2 * interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 2010, BytesIn: 201000, Outputs: outputs(destsA, 2010, 2010)}},
				Workers: []WorkerReport{{Worker: 0, Core: 0, WorkerCounters: WorkerCounters{RxPackets: 2010, KernelDrops: 7}}},
				Totals:  Totals{PacketsIn: 2010, PacketsOut: 4020, KernelDrops: 7},
			},
		},
		{
			name: "seq going backwards is a new life",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 7, rule("a", 50, 5000, 50, 50))},
				{At: interval, Snap: snap(0, 100, 1, rule("a", 3, 300, 3, 3))},
			},
			rules:    []RuleDesc{descA},
			reportAt: interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 53, BytesIn: 5300, Outputs: outputs(destsA, 53, 53)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 53, PacketsOut: 106},
			},
		},
		{
			name: "rule recreated within a life counts on",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 50, 5000, 50, 50))},
				{At: interval, Snap: snap(0, 100, 2, rule("a", 4, 400, 4, 4))},
			},
			rules:    []RuleDesc{descA},
			reportAt: interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 54, BytesIn: 5400, Outputs: outputs(destsA, 54, 54)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 54, PacketsOut: 108},
			},
		},
		{
			name: "duplicate snapshot ignored",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 50, 5000, 50, 50))},
				{At: 0, Snap: snap(0, 100, 1, rule("a", 50, 5000, 50, 50))},
			},
			rules: []RuleDesc{descA},
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 50, BytesIn: 5000, Outputs: outputs(destsA, 50, 50)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 50, PacketsOut: 100},
			},
		},
		{
			name: "rates from deltas",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: 0, Snap: snap(1, 200, 1, rule("a", 100, 10000, 100, 100))},
				{At: 2 * interval, Snap: snap(0, 100, 2, rule("a", 500, 50000, 500, 500))},
				{At: interval / 2, Snap: snap(1, 200, 2, rule("a", 150, 15000, 150, 150))},
			},
			rules:    []RuleDesc{descA},
			reportAt: 2 * interval,
			want: Report{
				// worker 0: 400 packets / 2 s; worker 1: 50 packets / 0.5 s.
				Rules:   []RuleReport{{ID: "a", PacketsIn: 650, BytesIn: 65000, PPS: 300, BPS: 8 * 30000, Outputs: outputs(destsA, 650, 650)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 650, PacketsOut: 1300},
			},
		},
		{
			name: "rate zero when rule absent from last snapshot",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: interval, Snap: snap(0, 100, 2, rule("a", 200, 20000, 200, 200))},
				{At: 2 * interval, Snap: snap(0, 100, 3)},
			},
			rules:    []RuleDesc{descA},
			reportAt: 2 * interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 200, BytesIn: 20000, Outputs: outputs(destsA, 200, 200)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 200, PacketsOut: 400},
			},
		},
		{
			name: "rate of a silent worker",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: interval, Snap: snap(0, 100, 2, rule("a", 200, 20000, 200, 200))},
			},
			rules:    []RuleDesc{descA},
			reportAt: 3*interval + time.Millisecond, // last snapshot more than 2 intervals ago
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 200, BytesIn: 20000, Outputs: outputs(destsA, 200, 200)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 200, PacketsOut: 400},
			},
		},
		{
			name: "rate of a worker 2 intervals quiet still counts",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: interval, Snap: snap(0, 100, 2, rule("a", 200, 20000, 200, 200))},
			},
			rules:    []RuleDesc{descA},
			reportAt: 3 * interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 200, BytesIn: 20000, PPS: 100, BPS: 80000, Outputs: outputs(destsA, 200, 200)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 200, PacketsOut: 400},
			},
		},
		{
			name: "removed rule starts from zero",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: interval, Remove: "a"},
				// The worker removed it and counts a re-added rule from 0.
				{At: 2 * interval, Snap: snap(0, 100, 2, rule("a", 3, 300, 3, 3))},
			},
			rules:    []RuleDesc{descA},
			reportAt: 2 * interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 3, BytesIn: 300, PPS: 1.5, BPS: 1200, Outputs: outputs(destsA, 3, 3)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 3, PacketsOut: 6},
			},
		},
		{
			name: "snapshot taken before removal does not resurrect",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("a", 100, 10000, 100, 100))},
				{At: interval, Snap: snap(1, 200, 1, rule("a", 100, 10000, 100, 100))},
				{At: 2 * interval, Remove: "a"},
				// Worker 0's snapshot from before the removal arrives late.
				{At: interval + interval/2, Snap: snap(0, 100, 2, rule("a", 150, 15000, 150, 150))},
				{At: 3 * interval, Snap: snap(1, 200, 2, rule("a", 1, 100, 1, 1))},
			},
			rules:    []RuleDesc{descA},
			reportAt: 3 * interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", PacketsIn: 1, BytesIn: 100, PPS: 0.5, BPS: 400, Outputs: outputs(destsA, 1, 1)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 1, PacketsOut: 2},
			},
		},
		{
			name: "unknown id kept until listed",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, rule("b", 9, 90, 9))},
			},
			rules: []RuleDesc{descB},
			want: Report{
				Rules:   []RuleReport{{ID: "b", PacketsIn: 9, BytesIn: 90, Outputs: outputs(destsB, 9)}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 9, PacketsOut: 9},
			},
		},
		{
			name: "outputs per index",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, RuleCounters{ID: "a", PacketsIn: 10, BytesIn: 1000, Outputs: []OutputCounters{
					{PacketsOut: 10, BytesOut: 1000}, {PacketsOut: 7, BytesOut: 700, Errors: 3},
				}})},
				{At: 0, Snap: snap(1, 200, 1, RuleCounters{ID: "a", PacketsIn: 1, BytesIn: 100, Outputs: []OutputCounters{
					{PacketsOut: 1, BytesOut: 100}, {Errors: 1},
				}})},
			},
			rules: []RuleDesc{descA},
			want: Report{
				Rules: []RuleReport{{ID: "a", PacketsIn: 11, BytesIn: 1100, Outputs: []OutputReport{
					{Destination: destsA[0], PacketsOut: 11, BytesOut: 1100},
					{Destination: destsA[1], PacketsOut: 7, BytesOut: 700, Errors: 4},
				}}},
				Workers: []WorkerReport{},
				Totals:  Totals{PacketsIn: 11, PacketsOut: 18},
			},
		},
		{
			name: "error of the lowest worker",
			steps: []step{
				{At: 0, Snap: snap(1, 200, 1, RuleCounters{ID: "a", Error: "eth2: no IPv6 address", Outputs: []OutputCounters{}})},
				{At: 0, Snap: snap(0, 100, 1, RuleCounters{ID: "a", Error: "eth2: no address", Outputs: []OutputCounters{}})},
			},
			rules: []RuleDesc{descA},
			want: Report{
				Rules:   []RuleReport{{ID: "a", Outputs: zeroOutputs(destsA...), Error: "eth2: no address"}},
				Workers: []WorkerReport{},
			},
		},
		{
			name: "error cleared by the worker",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, RuleCounters{ID: "a", Error: "eth2: no address", Outputs: []OutputCounters{}})},
				{At: interval, Snap: snap(0, 100, 2, RuleCounters{ID: "a", Outputs: []OutputCounters{}})},
			},
			rules:    []RuleDesc{descA},
			reportAt: interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", Outputs: zeroOutputs(destsA...)}},
				Workers: []WorkerReport{},
			},
		},
		{
			name: "error forgotten with the process",
			steps: []step{
				{At: 0, Snap: snap(0, 100, 1, RuleCounters{ID: "a", Error: "eth2: no address", Outputs: []OutputCounters{}})},
				{At: interval, Snap: snap(0, 101, 1)},
			},
			rules:    []RuleDesc{descA},
			reportAt: interval,
			want: Report{
				Rules:   []RuleReport{{ID: "a", Outputs: zeroOutputs(destsA...)}},
				Workers: []WorkerReport{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAggregator(interval)
			run(a, tt.steps)
			got := a.Report(tt.rules, tt.workers, at(tt.reportAt))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAggregatorRatesDecay(t *testing.T) {
	// Traffic at 1000 pps stops just after the snapshot at 3 s: the rate
	// is 0 by two intervals later, through absence from later snapshots.
	a := NewAggregator(interval)
	var packets uint64
	seq := uint64(0)
	observe := func(d time.Duration, rules ...RuleCounters) {
		seq++
		s := snap(0, 100, seq, rules...)
		s.UnixNano = at(d).UnixNano()
		a.Observe(&s, at(d))
	}
	pps := func(d time.Duration) float64 {
		return a.Report([]RuleDesc{descA}, nil, at(d)).Rules[0].PPS
	}
	for i := 0; i <= 3; i++ {
		observe(time.Duration(i)*interval, rule("a", packets, 100*packets, packets, packets))
		packets += 1000
	}
	if got := pps(3 * interval); got != 1000 {
		t.Fatalf("pps while sending = %v, want 1000", got)
	}
	packets += 10 // the last packets, after the 3 s snapshot
	observe(4*interval, rule("a", packets, 100*packets, packets, packets))
	observe(5*interval, nil...)
	if got := pps(5 * interval); got != 0 {
		t.Errorf("pps two intervals after traffic stopped = %v, want 0", got)
	}
	total := a.Report([]RuleDesc{descA}, nil, at(5*interval)).Totals.PacketsIn
	if total != packets {
		t.Errorf("packets_in = %d, want %d", total, packets)
	}
}

func TestAggregatorTotalsMonotonicAcrossRestarts(t *testing.T) {
	a := NewAggregator(interval)
	var last uint64
	d := time.Duration(0)
	for life := 0; life < 5; life++ {
		for seq := uint64(1); seq <= 4; seq++ {
			d += interval
			n := 100 * seq
			s := withCounters(snap(0, 1000+life, seq, rule("a", n, n, n, n)), WorkerCounters{RxPackets: n})
			s.UnixNano = at(d).UnixNano()
			a.Observe(&s, at(d))
			rep := a.Report([]RuleDesc{descA}, twoWorkers[:1], at(d))
			if got := rep.Totals.PacketsIn; got < last {
				t.Fatalf("life %d seq %d: packets_in went back from %d to %d", life, seq, last, got)
			}
			last = rep.Totals.PacketsIn
			if rep.Workers[0].RxPackets != last {
				t.Errorf("life %d seq %d: rx_packets %d, packets_in %d", life, seq, rep.Workers[0].RxPackets, last)
			}
		}
	}
	if last != 5*400 {
		t.Errorf("packets_in after 5 lives of 400 = %d", last)
	}
}

func TestAggregatorTombstoneExpires(t *testing.T) {
	a := NewAggregator(interval)
	a.clock = func() time.Time { return t0 }
	a.RemoveRule("a")
	s := snap(0, 100, 1, rule("a", 1, 1, 1, 1))
	s.UnixNano = at(tombstoneAge * interval).UnixNano()
	a.Observe(&s, at(tombstoneAge*interval+time.Millisecond))
	if len(a.removed) != 0 {
		t.Errorf("removal record kept after %d intervals", tombstoneAge)
	}
}

func TestAggregatorLastSeen(t *testing.T) {
	a := NewAggregator(interval)
	if _, ok := a.LastSeen(0); ok {
		t.Error("LastSeen before any snapshot: ok")
	}
	s := Snapshot{Worker: 0, PID: 42, Seq: 3, UnixNano: 1, RulesetHash: "0123456789abcdef", Backend: "uring"}
	a.Observe(&s, at(time.Second))
	got, ok := a.LastSeen(0)
	if !ok {
		t.Fatal("LastSeen after a snapshot: not ok")
	}
	want := Heartbeat{PID: 42, Seq: 3, At: at(time.Second), RulesetHash: "0123456789abcdef", Backend: "uring"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LastSeen (-want +got):\n%s", diff)
	}
	if _, ok := a.LastSeen(1); ok {
		t.Error("LastSeen of another worker: ok")
	}
}

func TestAggregatorDoesNotKeepSnapshot(t *testing.T) {
	a := NewAggregator(interval)
	s := snap(0, 100, 1, rule("a", 5, 500, 5, 5))
	a.Observe(&s, t0)
	s.Rules[0].Outputs[0].PacketsOut = 999 // the caller reuses its buffers
	got := a.Report([]RuleDesc{descA}, nil, t0).Rules[0].Outputs[0].PacketsOut
	if got != 5 {
		t.Errorf("packets_out = %d after the caller changed its snapshot, want 5", got)
	}
}

func TestAggregatorConcurrent(t *testing.T) {
	a := NewAggregator(interval)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 200; seq++ {
				s := snap(w, 100+w, seq, rule("a", seq, seq, seq, seq))
				s.UnixNano = at(time.Duration(seq) * time.Millisecond).UnixNano()
				a.Observe(&s, at(time.Duration(seq)*time.Millisecond))
				if seq%50 == 0 {
					a.Report([]RuleDesc{descA}, twoWorkers, t0)
					a.RemoveRule("zzz")
				}
			}
		}()
	}
	wg.Wait()
	if got := a.Report([]RuleDesc{descA}, nil, t0).Totals.PacketsIn; got != 4*200 {
		t.Errorf("packets_in = %d, want %d", got, 4*200)
	}
}

// TestAggregatorAddKernelDrops counts drops the supervisor read from a
// slot's sockets next to those its workers reported, in every life, and
// for a slot that never reported.
func TestAggregatorAddKernelDrops(t *testing.T) {
	a := NewAggregator(interval)
	s := withCounters(snap(0, 100, 1), WorkerCounters{KernelDrops: 5})
	a.Observe(&s, at(interval))
	a.AddKernelDrops(0, 7) // the worker died; the supervisor read the rest
	a.AddKernelDrops(1, 3) // slot 1 never reported
	a.AddKernelDrops(1, 0)
	s = withCounters(snap(0, 101, 1), WorkerCounters{KernelDrops: 2}) // the next worker
	a.Observe(&s, at(2*interval))
	rep := a.Report(nil, twoWorkers, at(2*interval))
	got := []uint64{rep.Workers[0].KernelDrops, rep.Workers[1].KernelDrops, rep.Totals.KernelDrops}
	if diff := cmp.Diff([]uint64{14, 3, 17}, got); diff != "" {
		t.Errorf("kernel_drops of worker 0, worker 1, totals (-want +got):\n%s", diff)
	}
}

// TestOutputErrors checks that the errors workers report per output reach
// the report and Errors, the lowest worker's first, and clear when the
// worker stops reporting them.
func TestOutputErrors(t *testing.T) {
	a := NewAggregator(interval)
	failing := func(w, pid int, seq uint64, errs ...string) Snapshot {
		rc := rule("r", 0, 0, 0, 0)
		rc.Error, rc.OutputErrors = "some outputs fail", errs
		return snap(w, pid, seq, rc)
	}
	run(a, []step{
		{At: 0, Snap: failing(1, 11, 1, "", "from worker 1")},
		{At: 0, Snap: failing(0, 10, 1, "", "from worker 0")},
		{At: 0, Snap: snap(2, 12, 1, rule("ok", 0, 0, 0))},
	})
	rep := a.Report([]RuleDesc{desc("r", "a", "b"), desc("ok", "c")}, nil, at(0))
	want := []RuleReport{
		{ID: "r", Error: "some outputs fail", Outputs: []OutputReport{{Destination: "a"}, {Destination: "b", Error: "from worker 0"}}},
		{ID: "ok", Outputs: []OutputReport{{Destination: "c"}}},
	}
	if diff := cmp.Diff(want, rep.Rules); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]RuleErrors{"r": {Error: "some outputs fail", Outputs: []string{"", "from worker 0"}}}, a.Errors()); diff != "" {
		t.Errorf("Errors (-want +got):\n%s", diff)
	}
	// The rule now has three outputs, the workers still report the old
	// version's two: the per-output errors are not the new outputs'.
	rep = a.Report([]RuleDesc{desc("r", "a", "b", "c")}, nil, at(0))
	if diff := cmp.Diff([]OutputReport{{Destination: "a"}, {Destination: "b"}, {Destination: "c"}}, rep.Rules[0].Outputs); diff != "" {
		t.Errorf("outputs of a rule whose workers report another number of outputs (-want +got):\n%s", diff)
	}
	// Both workers recover: the errors go.
	run(a, []step{
		{At: interval, Snap: snap(0, 10, 2, rule("r", 0, 0, 0, 0))},
		{At: interval, Snap: snap(1, 11, 2, rule("r", 0, 0, 0, 0))},
	})
	if got := a.Errors(); len(got) != 0 {
		t.Errorf("Errors after recovery = %v, want none", got)
	}
}

// TestReportOutputState: the report shows the state of the outputs that
// follow their receivers (when_joined), idle among them, and of no other.
func TestReportOutputState(t *testing.T) {
	rd := RuleDesc{ID: "r", State: "active", Outputs: []OutputDesc{
		{Destination: "a", State: "idle", WhenJoined: true},
		{Destination: "b", State: "active", WhenJoined: true},
		{Destination: "c", State: "down"},
	}}
	rep := NewAggregator(interval).Report([]RuleDesc{rd}, nil, at(0))
	want := []OutputReport{{Destination: "a", State: "idle"}, {Destination: "b", State: "active"}, {Destination: "c"}}
	if diff := cmp.Diff(want, rep.Rules[0].Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
}
