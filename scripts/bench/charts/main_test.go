package main

import (
	"math"
	"strings"
	"testing"
)

// TestLatencyCharts renders a latency summary: one chart per percentile,
// a bar per variant and rate, a gap where a variant has no point.
func TestLatencyCharts(t *testing.T) {
	tab, err := parseCSV(strings.NewReader("variant,rate,p50_us,p99_us,p999_us\n" +
		"none,1000,17,74,260\nmcr,1000,40,120,400\nnone,10000,14,50,213\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs := latencyCharts(tab)
	if len(cs) != 3 || cs[0].file != "latency-p50.svg" || cs[2].file != "latency-p999.svg" {
		t.Fatalf("charts %+v", cs)
	}
	c := cs[0]
	if strings.Join(c.groups, ",") != "1k,10k" || strings.Join(c.series, ",") != "none,mcr" {
		t.Errorf("groups %v, series %v", c.groups, c.series)
	}
	if c.val[1][0] != 40 || !math.IsNaN(c.val[1][1]) {
		t.Errorf("mcr values %v, want 40 and no point", c.val[1])
	}
	var b strings.Builder
	c.svg(&b)
	if n := strings.Count(b.String(), "<title>"); n != 3 {
		t.Errorf("%d bars drawn, want 3:\n%s", n, b.String())
	}
}

// TestRunCharts groups run.sh points by fan-out, size and rate.
func TestRunCharts(t *testing.T) {
	tab, err := parseCSV(strings.NewReader("variant,fanout,size,rate,loss_pct,ns_per_pkt_net\n" +
		"mcr,4,1024,max,0.5,5300\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs := runCharts(tab)
	if cs[0].groups[0] != "1→4 1024 B max" || cs[0].val[0][0] != 5.3 || cs[1].val[0][0] != 0.5 {
		t.Errorf("cpu %+v, loss %+v", cs[0], cs[1])
	}
}
