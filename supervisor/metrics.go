package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/pool"
)

// metricsSource is what the Prometheus endpoint reads at scrape time: the
// same answers GetStats, ListWorkers and ListRules give, so /metrics never
// keeps a second copy of any counter. Scrapes run on HTTP goroutines, so the
// methods must be safe for concurrent use.
type metricsSource interface {
	// Report is the GetStats result.
	Report() stats.Report
	// Workers is the ListWorkers result.
	Workers() []controlproto.WorkerInfo
	// ExclusiveDropped is, per input interface name, the datagrams
	// --exclusive-inputs dropped at tc ingress; empty when off.
	ExclusiveDropped() map[string]uint64
	// Groups is the ListGroups result for every interface; empty without
	// listener tables.
	Groups() []controlproto.InterfaceGroups
}

// Metric descriptions (docs/stats.md lists them). Counters are the
// supervisor's totals, which survive worker restarts; a removed rule's
// series disappear with it.
var (
	descRulePacketsIn = prometheus.NewDesc("mcr_rule_packets_in_total",
		"Datagrams received that matched the rule, summed over workers.", []string{"rule"}, nil)
	descRuleBytesIn = prometheus.NewDesc("mcr_rule_bytes_in_total",
		"UDP payload bytes received that matched the rule.", []string{"rule"}, nil)
	descOutputPacketsOut = prometheus.NewDesc("mcr_output_packets_out_total",
		"Datagrams sent to the output.", []string{"rule", "output"}, nil)
	descOutputBytesOut = prometheus.NewDesc("mcr_output_bytes_out_total",
		"UDP payload bytes sent to the output.", []string{"rule", "output"}, nil)
	descOutputErrors = prometheus.NewDesc("mcr_output_errors_total",
		"Datagrams for the output that failed to send or were dropped.", []string{"rule", "output"}, nil)
	descOutputNotSentIdle = prometheus.NewDesc("mcr_output_not_sent_idle_total",
		"Datagrams an output with when_joined did not send because no listener wanted it (not errors); only for such outputs.",
		[]string{"rule", "output"}, nil)
	descWorkerRestarts = prometheus.NewDesc("mcr_worker_restarts_total",
		"Times the supervisor restarted the worker.", []string{"worker"}, nil)
	descWorkerResyncs = prometheus.NewDesc("mcr_worker_resyncs_total",
		"SyncRules sent because the worker's ruleset hash did not match the supervisor's.", []string{"worker"}, nil)
	descWorkerInSync = prometheus.NewDesc("mcr_worker_in_sync",
		"1 when the worker's ruleset hash matches the supervisor's, else 0.", []string{"worker"}, nil)
	descWorkersUp = prometheus.NewDesc("mcr_workers_up",
		"Workers in state running.", nil, nil)
	descRules = prometheus.NewDesc("mcr_rules",
		"Rules by state: active (input interface up), pending (interface missing), down (interface down).", []string{"state"}, nil)
	descOutputs = prometheus.NewDesc("mcr_outputs",
		"Outputs of all rules by state: active (output interface up), pending (interface missing), down (interface down), "+
			"failing (interface up, but the workers cannot send to it), idle (when_joined and no listener wants it).", []string{"state"}, nil)
	descExclusiveDropped = prometheus.NewDesc("mcr_exclusive_dropped_packets_total",
		"Relayed datagrams --exclusive-inputs kept from the kernel's own receive path on the input interface, "+
			"since the interface's program was attached (it starts again from 0 when the interface is recreated).",
		[]string{"interface"}, nil)
	descWorkerRingUsed = prometheus.NewDesc("mcr_worker_rx_ring_used",
		"Frames (blocks, for block rings) of the worker's receive rings that are the worker's: waiting to be relayed or held by sends in flight.",
		[]string{"worker"}, nil)
	descWorkerRingSize = prometheus.NewDesc("mcr_worker_rx_ring_size",
		"Frames (blocks, for block rings) of the worker's receive rings, over all its inputs.", []string{"worker"}, nil)
	descBuildInfo = prometheus.NewDesc("mcr_build_info",
		"Always 1; the labels name the mcrd build.", []string{"version", "goversion"}, nil)
)

// workerCounters are the per-worker data-plane counters (stats.WorkerCounters,
// summed over the worker slot's lives), one metric each, labelled worker.
var workerCounters = []struct {
	desc  *prometheus.Desc
	value func(*stats.WorkerCounters) uint64
}{
	{workerDesc("rx_packets", "Packets the worker received on its AF_PACKET sockets."),
		func(c *stats.WorkerCounters) uint64 { return c.RxPackets }},
	{workerDesc("no_match", "Well-formed UDP packets that matched no rule (dropped)."),
		func(c *stats.WorkerCounters) uint64 { return c.NoMatch }},
	{workerDesc("malformed", "Truncated packets and packets with inconsistent IP or UDP headers (dropped)."),
		func(c *stats.WorkerCounters) uint64 { return c.Malformed }},
	{workerDesc("fragments", "IPv4 and IPv6 fragments (dropped, never forwarded)."),
		func(c *stats.WorkerCounters) uint64 { return c.Fragments }},
	{workerDesc("not_udp", "Well-formed IP packets that are not UDP (dropped)."),
		func(c *stats.WorkerCounters) uint64 { return c.NotUDP }},
	{workerDesc("vlan_tagged", "Frames with a VLAN tag on an input interface: another VLAN's traffic (dropped)."),
		func(c *stats.WorkerCounters) uint64 { return c.VLANTagged }},
	{workerDesc("bad_checksum", "Datagrams matching a rule whose UDP checksum is wrong (dropped)."),
		func(c *stats.WorkerCounters) uint64 { return c.BadChecksum }},
	{workerDesc("kernel_drops", "Packets the kernel dropped on the worker's AF_PACKET sockets (PACKET_STATISTICS tp_drops): receive ring full, or receive buffer full with --rx-ring-blocks 0; also what arrived for the worker while it was dead or hung."),
		func(c *stats.WorkerCounters) uint64 { return c.KernelDrops }},
	{workerDesc("rx_ring_full", "Times the kernel found the worker's receive ring full: block ring freezes, or packets a frame ring had no free frame for; each drops packets (kernel_drops)."),
		func(c *stats.WorkerCounters) uint64 { return c.RingFull }},
	{workerDesc("buffer_exhausted", "Packets dropped because the worker had no free packet buffer."),
		func(c *stats.WorkerCounters) uint64 { return c.BufferExhausted }},
	{workerDesc("restart_unconfirmed", "Received packets a worker that died had handled without seeing their sends through (its last batch): sent or not, nobody can tell; not sent again. An upper bound of what the death lost."),
		func(c *stats.WorkerCounters) uint64 { return c.RestartUnconfirmed }},
	{workerDesc("egress_errors", "Failed or dropped sends over all outputs."),
		func(c *stats.WorkerCounters) uint64 { return c.EgressErrors }},
	{workerDesc("loops", "Datagrams that came back to an input with the source of one of the relay's own outputs (a network loop), dropped."),
		func(c *stats.WorkerCounters) uint64 { return c.Loops }},
	{workerDesc("ttl_expired", "Datagrams not sent to a transparent output because their TTL or hop limit ran out, once per output."),
		func(c *stats.WorkerCounters) uint64 { return c.TTLExpired }},
	{workerDesc("stats_dropped", "Stats snapshots the worker dropped because its stats pipe was full."),
		func(c *stats.WorkerCounters) uint64 { return c.StatsDropped }},
	{workerDesc("logs_dropped", "Log records the worker dropped because its log pipe was full."),
		func(c *stats.WorkerCounters) uint64 { return c.LogsDropped }},
	{workerDesc("gso_sends", "UDP GSO sends: each carried several datagrams in one system call."),
		func(c *stats.WorkerCounters) uint64 { return c.GSOSends }},
	{workerDesc("gso_datagrams", "Datagrams that left in UDP GSO sends."),
		func(c *stats.WorkerCounters) uint64 { return c.GSODatagrams }},
	{workerDesc("gso_fallbacks", "Egress sockets on which the kernel refused UDP GSO, so they send plainly."),
		func(c *stats.WorkerCounters) uint64 { return c.GSOFallbacks }},
	{workerDesc("socket_errors", "Socket requests to the supervisor that failed on the way: no reply in time, the fd lost (worker out of file descriptors), a reply out of frame."),
		func(c *stats.WorkerCounters) uint64 { return c.SocketErrors }},
	{workerDesc("socket_resyncs", "Times the worker found its socket stream to the supervisor out of frame and resynchronised it."),
		func(c *stats.WorkerCounters) uint64 { return c.SocketResyncs }},
}

func workerDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("mcr_worker_"+name+"_total", help, []string{"worker"}, nil)
}

// namespaceCounters are the kernel counters of the daemon's network
// namespace (stats.NamespaceCounters), exported when GetStats has them.
var namespaceCounters = []struct {
	desc  *prometheus.Desc
	value func(*stats.NamespaceCounters) uint64
}{
	{namespaceDesc("ip_reasm_fragments", "IPv4 fragments queued for reassembly (ReasmReqds)."),
		func(c *stats.NamespaceCounters) uint64 { return c.IPReasmReqds }},
	{namespaceDesc("ip_reasm_datagrams", "IPv4 datagrams reassembled (ReasmOKs)."),
		func(c *stats.NamespaceCounters) uint64 { return c.IPReasmOKs }},
	{namespaceDesc("ip_reasm_failures", "IPv4 datagrams given up by reassembly, fragments lost or memory short (ReasmFails); "+
		"relayed datagrams among them never reached a worker."),
		func(c *stats.NamespaceCounters) uint64 { return c.IPReasmFails }},
	{namespaceDesc("ip_reasm_timeouts", "IPv4 reassembly failures that timed out waiting for fragments (ReasmTimeout)."),
		func(c *stats.NamespaceCounters) uint64 { return c.IPReasmTimeout }},
}

func namespaceDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("mcr_namespace_"+name+"_total",
		help+" Kernel counter of the whole network namespace the daemon runs in.", nil, nil)
}

// metricsCollector is a prometheus.Collector that turns one read of its
// source into metrics at every scrape.
type metricsCollector struct {
	src       metricsSource
	buildInfo prometheus.Metric
}

var _ prometheus.Collector = (*metricsCollector)(nil)

// newMetricsHandler returns the /metrics handler: mcr's metrics, read from
// src at scrape time, plus the Go runtime and process collectors, on a
// registry of its own (nothing else in the process can add to it). version
// is the build version mcr_build_info reports.
func newMetricsHandler(src metricsSource, version string) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		&metricsCollector{
			src:       src,
			buildInfo: prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, version, runtime.Version()),
		},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// ContinueOnError: a metric that fails to collect must not hide the rest.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Describe sends every description the collector uses.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descRulePacketsIn, descRuleBytesIn, descOutputPacketsOut, descOutputBytesOut, descOutputErrors, descOutputNotSentIdle,
		descWorkerRestarts, descWorkerResyncs, descWorkerInSync, descWorkersUp, descRules, descOutputs, descBuildInfo,
		descExclusiveDropped, descWorkerRingUsed, descWorkerRingSize,
		descListenerGroups, descQuerierActive, descQueriesSent, descQueriesReceived, descListenerReports, descListenerLeaves,
	} {
		ch <- d
	}
	for _, wc := range workerCounters {
		ch <- wc.desc
	}
	for _, nc := range namespaceCounters {
		ch <- nc.desc
	}
}

// Collect reads the source once and sends the metrics.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.buildInfo
	report := c.src.Report()
	collectRules(ch, report.Rules)
	for i := range report.Workers {
		w := &report.Workers[i]
		id := strconv.Itoa(w.Worker)
		for _, wc := range workerCounters {
			ch <- counter(wc.desc, wc.value(&w.WorkerCounters), id)
		}
		ch <- gauge(descWorkerRingUsed, float64(w.Ring.Used), id)
		ch <- gauge(descWorkerRingSize, float64(w.Ring.Size), id)
	}
	if ns := report.Namespace; ns != nil {
		for _, nc := range namespaceCounters {
			ch <- counter(nc.desc, nc.value(ns))
		}
	}
	collectWorkers(ch, c.src.Workers())
	collectStates(ch, descRules, report.Totals.Rules)
	collectStates(ch, descOutputs, report.Totals.Outputs)
	for name, n := range c.src.ExclusiveDropped() {
		ch <- counter(descExclusiveDropped, n, name)
	}
	collectGroups(ch, c.src.Groups())
}

// collectRules sends the per-rule and per-output counters.
func collectRules(ch chan<- prometheus.Metric, rules []stats.RuleReport) {
	for _, r := range rules {
		ch <- counter(descRulePacketsIn, r.PacketsIn, r.ID)
		ch <- counter(descRuleBytesIn, r.BytesIn, r.ID)
		for _, o := range r.Outputs {
			ch <- counter(descOutputPacketsOut, o.PacketsOut, r.ID, o.Destination)
			ch <- counter(descOutputBytesOut, o.BytesOut, r.ID, o.Destination)
			ch <- counter(descOutputErrors, o.Errors, r.ID, o.Destination)
			if o.State != "" { // follows its receivers
				ch <- counter(descOutputNotSentIdle, o.NotSentIdle, r.ID, o.Destination)
			}
		}
	}
}

// collectWorkers sends the per-worker process metrics and mcr_workers_up.
func collectWorkers(ch chan<- prometheus.Metric, workers []controlproto.WorkerInfo) {
	up := 0
	for _, w := range workers {
		id := strconv.Itoa(w.Worker)
		ch <- counter(descWorkerRestarts, uint64(w.Restarts), id)
		ch <- counter(descWorkerResyncs, uint64(w.Resyncs), id)
		ch <- gauge(descWorkerInSync, boolValue(w.InSync), id)
		if w.State == pool.StateRunning.String() {
			up++
		}
	}
	ch <- gauge(descWorkersUp, float64(up))
}

// collectStates sends mcr_rules or mcr_outputs: every state, 0 included, so
// that a query for down rules finds a series and not an absence. Only
// outputs can be failing.
func collectStates(ch chan<- prometheus.Metric, d *prometheus.Desc, c stats.StateCounts) {
	ch <- gauge(d, float64(c.Active), controlproto.StateActive)
	ch <- gauge(d, float64(c.Down), controlproto.StateDown)
	ch <- gauge(d, float64(c.Pending), controlproto.StatePending)
	if d == descOutputs {
		ch <- gauge(d, float64(c.Failing), "failing")
		ch <- gauge(d, float64(c.Idle), controlproto.StateIdle)
	}
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsShutdownTimeout bounds how long serveMetrics waits for scrapes in
// flight when its context ends.
const metricsShutdownTimeout = 2 * time.Second

// listenMetrics opens the TCP listener of --metrics-listen. It is separate
// from serveMetrics so that a bad address or a port in use fails the daemon
// at start, like the control socket does, and so that a test can listen on
// port 0 and learn the port.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ln, nil
}

// serveMetrics serves h at /metrics on ln until ctx ends, then shuts the
// server down (waiting up to 2 s for scrapes in flight) and returns nil. It
// takes ownership of ln and closes it. Any other path is 404. An error means
// the server failed while ctx was still live, or did not stop cleanly.
func serveMetrics(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("metrics endpoint listening", "addr", ln.Addr().String(), "path", "/metrics")

	select {
	case err := <-served:
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metricsShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close() // scrapes still running after the grace period are cut off
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("stop metrics server: %w", err)
	}
	log.Info("metrics endpoint stopped")
	return nil
}
