package supervisor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/querier"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/pool"
)

// fakeMetricsSource is a metricsSource whose answers a test sets.
type fakeMetricsSource struct {
	mu        sync.Mutex
	report    stats.Report
	workers   []controlproto.WorkerInfo
	exclusive map[string]uint64
	groups    []controlproto.InterfaceGroups
}

func (f *fakeMetricsSource) Report() stats.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.report
}

func (f *fakeMetricsSource) Workers() []controlproto.WorkerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workers
}

func (f *fakeMetricsSource) ExclusiveDropped() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exclusive
}

func (f *fakeMetricsSource) Groups() []controlproto.InterfaceGroups {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.groups
}

// family is a parsed metric family reduced to what the tests compare:
// its type and each sample's value by its labels (`a="x",b="y"`).
type family struct {
	Type    string
	Samples map[string]float64
}

// scrape GETs url and parses the text exposition strictly (legacy metric
// names, as Prometheus conventions require).
func scrape(t *testing.T, client *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: status %s: %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want text/plain", url, ct)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape of %s: %v", url, err)
	}
	return fams
}

// mcrFamilies reduces the mcr_ families of a scrape.
func mcrFamilies(fams map[string]*dto.MetricFamily) map[string]family {
	out := map[string]family{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "mcr_") {
			continue
		}
		fam := family{Type: f.GetType().String(), Samples: map[string]float64{}}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			slices.Sort(labels)
			key := strings.Join(labels, ",")
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				fam.Samples[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				fam.Samples[key] = m.GetGauge().GetValue()
			default:
				fam.Samples[key] = -1 // an unexpected type shows in the diff
			}
		}
		out[name] = fam
	}
	return out
}

func testSource() *fakeMetricsSource {
	return &fakeMetricsSource{
		report: stats.Report{
			Rules: []stats.RuleReport{
				{ID: "market-a", PacketsIn: 1000, BytesIn: 1316000, PPS: 10, BPS: 80, Outputs: []stats.OutputReport{
					{Destination: "239.2.2.2:6000@eth1", PacketsOut: 990, BytesOut: 1302840, Errors: 10},
					{Destination: "[ff3e::1]:6000@eth2", PacketsOut: 1000, BytesOut: 1316000},
				}},
				{ID: "idle", Outputs: []stats.OutputReport{{Destination: "10.1.0.50:7000@eth1"}}},
			},
			Workers: []stats.WorkerReport{
				{Worker: 0, Core: 2, WorkerCounters: stats.WorkerCounters{
					RxPackets: 700, NoMatch: 1, Malformed: 2, Fragments: 3, NotUDP: 4, KernelDrops: 5,
					BufferExhausted: 6, EgressErrors: 7, StatsDropped: 8, LogsDropped: 9,
					GSOSends: 10, GSODatagrams: 11, GSOFallbacks: 12, SocketErrors: 13, SocketResyncs: 14,
					VLANTagged: 15, BadChecksum: 16, Loops: 17, TTLExpired: 18, RingFull: 19, RestartUnconfirmed: 21},
					Ring: stats.RingUsage{Used: 20, Size: 4096}},
				{Worker: 1, Core: 3, WorkerCounters: stats.WorkerCounters{RxPackets: 300}},
			},
			Totals: stats.Totals{
				Rules:   stats.StateCounts{Active: 1, Down: 2},
				Outputs: stats.StateCounts{Active: 2, Pending: 1, Down: 4, Failing: 3},
			},
			Namespace: &stats.NamespaceCounters{IPReasmReqds: 21, IPReasmOKs: 10, IPReasmFails: 2, IPReasmTimeout: 1},
		},
		workers: []controlproto.WorkerInfo{
			{Worker: 0, PID: 100, Core: 2, State: pool.StateRunning.String(), Restarts: 2, Resyncs: 1, InSync: true},
			{Worker: 1, PID: 0, Core: 3, State: pool.StateBackoff.String(), Restarts: 5, InSync: false},
		},
		exclusive: map[string]uint64{"eth0": 42, "eth0.100": 0},
		groups: []controlproto.InterfaceGroups{{Interface: "eth1", Families: []controlproto.FamilyQuerier{
			{Family: "ipv4", Role: querier.Querier.String(), Groups: 3, QueriesSent: 4, QueriesReceived: 5, Reports: 6, Leaves: 7},
			{Family: "ipv6", Role: querier.NonQuerier.String(), Groups: 1},
		}}},
	}
}

func TestMetricsHandlerExposesSource(t *testing.T) {
	srv := httptest.NewServer(newMetricsHandler(testSource(), "1.2.3"))
	defer srv.Close()
	fams := scrape(t, srv.Client(), srv.URL)

	const (
		a   = `rule="market-a"`
		o1  = `output="239.2.2.2:6000@eth1",` + a
		o2  = `output="[ff3e::1]:6000@eth2",` + a
		idl = `output="10.1.0.50:7000@eth1",rule="idle"`
		w0  = `worker="0"`
		w1  = `worker="1"`
	)
	counter := func(s map[string]float64) family { return family{Type: "COUNTER", Samples: s} }
	gauge := func(s map[string]float64) family { return family{Type: "GAUGE", Samples: s} }
	want := map[string]family{
		"mcr_rule_packets_in_total":              counter(map[string]float64{a: 1000, `rule="idle"`: 0}),
		"mcr_rule_bytes_in_total":                counter(map[string]float64{a: 1316000, `rule="idle"`: 0}),
		"mcr_output_packets_out_total":           counter(map[string]float64{o1: 990, o2: 1000, idl: 0}),
		"mcr_output_bytes_out_total":             counter(map[string]float64{o1: 1302840, o2: 1316000, idl: 0}),
		"mcr_output_errors_total":                counter(map[string]float64{o1: 10, o2: 0, idl: 0}),
		"mcr_worker_rx_packets_total":            counter(map[string]float64{w0: 700, w1: 300}),
		"mcr_worker_no_match_total":              counter(map[string]float64{w0: 1, w1: 0}),
		"mcr_worker_malformed_total":             counter(map[string]float64{w0: 2, w1: 0}),
		"mcr_worker_fragments_total":             counter(map[string]float64{w0: 3, w1: 0}),
		"mcr_worker_not_udp_total":               counter(map[string]float64{w0: 4, w1: 0}),
		"mcr_worker_kernel_drops_total":          counter(map[string]float64{w0: 5, w1: 0}),
		"mcr_worker_rx_ring_full_total":          counter(map[string]float64{w0: 19, w1: 0}),
		"mcr_worker_rx_ring_used":                gauge(map[string]float64{w0: 20, w1: 0}),
		"mcr_worker_rx_ring_size":                gauge(map[string]float64{w0: 4096, w1: 0}),
		"mcr_worker_buffer_exhausted_total":      counter(map[string]float64{w0: 6, w1: 0}),
		"mcr_worker_restart_unconfirmed_total":   counter(map[string]float64{w0: 21, w1: 0}),
		"mcr_worker_egress_errors_total":         counter(map[string]float64{w0: 7, w1: 0}),
		"mcr_worker_stats_dropped_total":         counter(map[string]float64{w0: 8, w1: 0}),
		"mcr_worker_logs_dropped_total":          counter(map[string]float64{w0: 9, w1: 0}),
		"mcr_worker_gso_sends_total":             counter(map[string]float64{w0: 10, w1: 0}),
		"mcr_worker_gso_datagrams_total":         counter(map[string]float64{w0: 11, w1: 0}),
		"mcr_worker_gso_fallbacks_total":         counter(map[string]float64{w0: 12, w1: 0}),
		"mcr_worker_socket_errors_total":         counter(map[string]float64{w0: 13, w1: 0}),
		"mcr_worker_socket_resyncs_total":        counter(map[string]float64{w0: 14, w1: 0}),
		"mcr_worker_restarts_total":              counter(map[string]float64{w0: 2, w1: 5}),
		"mcr_worker_resyncs_total":               counter(map[string]float64{w0: 1, w1: 0}),
		"mcr_worker_in_sync":                     gauge(map[string]float64{w0: 1, w1: 0}),
		"mcr_workers_up":                         gauge(map[string]float64{"": 1}),
		"mcr_rules":                              gauge(map[string]float64{`state="active"`: 1, `state="down"`: 2, `state="pending"`: 0}),
		"mcr_outputs":                            gauge(map[string]float64{`state="active"`: 2, `state="down"`: 4, `state="pending"`: 1, `state="failing"`: 3, `state="idle"`: 0}),
		"mcr_build_info":                         gauge(map[string]float64{`goversion="` + runtime.Version() + `",version="1.2.3"`: 1}),
		"mcr_worker_vlan_tagged_total":           counter(map[string]float64{w0: 15, w1: 0}),
		"mcr_worker_bad_checksum_total":          counter(map[string]float64{w0: 16, w1: 0}),
		"mcr_worker_loops_total":                 counter(map[string]float64{w0: 17, w1: 0}),
		"mcr_worker_ttl_expired_total":           counter(map[string]float64{w0: 18, w1: 0}),
		"mcr_namespace_ip_reasm_fragments_total": counter(map[string]float64{"": 21}),
		"mcr_namespace_ip_reasm_datagrams_total": counter(map[string]float64{"": 10}),
		"mcr_namespace_ip_reasm_failures_total":  counter(map[string]float64{"": 2}),
		"mcr_namespace_ip_reasm_timeouts_total":  counter(map[string]float64{"": 1}),
	}
	want["mcr_exclusive_dropped_packets_total"] = counter(map[string]float64{`interface="eth0"`: 42, `interface="eth0.100"`: 0})
	const v4, v6 = `family="ipv4",interface="eth1"`, `family="ipv6",interface="eth1"`
	want["mcr_listener_groups"] = gauge(map[string]float64{v4: 3, v6: 1})
	want["mcr_querier_active"] = gauge(map[string]float64{v4: 1, v6: 0})
	want["mcr_querier_queries_sent_total"] = counter(map[string]float64{v4: 4, v6: 0})
	want["mcr_querier_queries_received_total"] = counter(map[string]float64{v4: 5, v6: 0})
	want["mcr_listener_reports_total"] = counter(map[string]float64{v4: 6, v6: 0})
	want["mcr_listener_leaves_total"] = counter(map[string]float64{v4: 7, v6: 0})
	if diff := cmp.Diff(want, mcrFamilies(fams)); diff != "" {
		t.Errorf("mcr metrics (-want +got):\n%s", diff)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("scrape lacks %s (Go and process collectors)", name)
		}
	}
}

// TestMetricsReadSourceAtScrape checks that each scrape reads the source
// anew: no copy of a counter is kept between scrapes.
func TestMetricsReadSourceAtScrape(t *testing.T) {
	src := &fakeMetricsSource{}
	srv := httptest.NewServer(newMetricsHandler(src, "dev"))
	defer srv.Close()

	got := mcrFamilies(scrape(t, srv.Client(), srv.URL))
	if _, ok := got["mcr_rule_packets_in_total"]; ok {
		t.Errorf("empty source: mcr_rule_packets_in_total present: %v", got["mcr_rule_packets_in_total"])
	}
	if diff := cmp.Diff(map[string]float64{"": 0}, got["mcr_workers_up"].Samples); diff != "" {
		t.Errorf("empty source: mcr_workers_up (-want +got):\n%s", diff)
	}
	if _, ok := got["mcr_namespace_ip_reasm_failures_total"]; ok {
		t.Error("report without namespace counters: mcr_namespace_ip_reasm_failures_total present")
	}

	src.mu.Lock()
	src.report.Rules = []stats.RuleReport{{ID: "r", PacketsIn: 42}}
	src.workers = []controlproto.WorkerInfo{{Worker: 0, State: pool.StateRunning.String()}, {Worker: 1, State: pool.StateRunning.String()}}
	src.mu.Unlock()
	got = mcrFamilies(scrape(t, srv.Client(), srv.URL))
	if diff := cmp.Diff(map[string]float64{`rule="r"`: 42}, got["mcr_rule_packets_in_total"].Samples); diff != "" {
		t.Errorf("after update: mcr_rule_packets_in_total (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"": 2}, got["mcr_workers_up"].Samples); diff != "" {
		t.Errorf("after update: mcr_workers_up (-want +got):\n%s", diff)
	}
}

func TestServeMetricsServesAndStops(t *testing.T) {
	ln, err := listenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- serveMetrics(ctx, ln, newMetricsHandler(testSource(), "dev"), log) }()

	client := &http.Client{Timeout: 5 * time.Second}
	fams := scrape(t, client, "http://"+addr+"/metrics")
	if fams["mcr_workers_up"] == nil {
		t.Errorf("scrape of %s lacks mcr_workers_up", addr)
	}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: status %d, want 404", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveMetrics after cancel: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveMetrics did not return within 5s of its context ending")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after serveMetrics returned", addr)
	}
}

func TestListenMetricsError(t *testing.T) {
	ln, err := listenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = listenMetrics(addr)
	if err == nil {
		t.Fatalf("second listen on %s succeeded", addr)
	}
	if want := "listen for metrics on " + addr + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want prefix %q", err, want)
	}
}
