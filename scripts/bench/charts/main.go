// Command charts renders the results of the benchmark scripts as SVG bar
// charts, side by side per variant: latency percentiles per rate from
// latency.sh's summary.csv, and CPU per packet and loss per point from
// run.sh's summary.csv. It uses the standard library only, so the scripts
// can run it wherever Go is.
//
//	go run ./scripts/bench/charts -latency DIR/summary.csv -out docs/perf
//	go run ./scripts/bench/charts -run DIR/summary.csv -out docs/perf
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	lat := flag.String("latency", "", "latency.sh summary.csv")
	run := flag.String("run", "", "run.sh summary.csv")
	out := flag.String("out", ".", "directory for the SVG files")
	prefix := flag.String("prefix", "", "prefix of the SVG file names")
	flag.Parse()
	if *lat == "" && *run == "" {
		fmt.Fprintln(os.Stderr, "charts: give -latency and/or -run")
		os.Exit(2)
	}
	if err := render(*lat, *run, *out, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

func render(lat, run, out, prefix string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if lat != "" {
		t, err := readCSV(lat)
		if err != nil {
			return err
		}
		for _, c := range latencyCharts(t) {
			if err := write(filepath.Join(out, prefix+c.file), c); err != nil {
				return err
			}
		}
	}
	if run != "" {
		t, err := readCSV(run)
		if err != nil {
			return err
		}
		for _, c := range runCharts(t) {
			if err := write(filepath.Join(out, prefix+c.file), c); err != nil {
				return err
			}
		}
	}
	return nil
}

// table is a CSV file with a header: rows as maps from column name.
type table []map[string]string

func readCSV(path string) (table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCSV(f)
}

func parseCSV(r io.Reader) (table, error) {
	rd := csv.NewReader(r)
	rd.FieldsPerRecord = -1
	recs, err := rd.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("no header")
	}
	var t table
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, name := range recs[0] {
			if i < len(rec) {
				row[name] = rec[i]
			}
		}
		t = append(t, row)
	}
	return t, nil
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// chart is a grouped bar chart: one group per x label, one bar per series
// in each group, optionally on a logarithmic axis.
type chart struct {
	file, title, unit string
	groups, series    []string
	val               [][]float64 // [series][group]; NaN: no bar
	log               bool
}

func newChart(file, title, unit string, log bool) *chart {
	return &chart{file: file, title: title, unit: unit, log: log}
}

func index(list *[]string, s string) int {
	for i, x := range *list {
		if x == s {
			return i
		}
	}
	*list = append(*list, s)
	return len(*list) - 1
}

func (c *chart) set(series, group string, v float64) {
	si, gi := index(&c.series, series), index(&c.groups, group)
	for len(c.val) <= si {
		c.val = append(c.val, nil)
	}
	for i := range c.val {
		for len(c.val[i]) < len(c.groups) {
			c.val[i] = append(c.val[i], math.NaN())
		}
	}
	c.val[si][gi] = v
}

// latencyCharts: p50, p99 and p99.9 per variant, grouped by rate.
func latencyCharts(t table) []*chart {
	var cs []*chart
	for _, p := range []struct{ col, name string }{{"p50_us", "p50"}, {"p99_us", "p99"}, {"p999_us", "p99.9"}} {
		c := newChart("latency-"+strings.ReplaceAll(p.name, ".", "")+".svg",
			"One-way latency, "+p.name+" (median of repetitions)", "µs, log scale", true)
		for _, r := range t {
			c.set(r["variant"], pps(r["rate"]), num(r[p.col]))
		}
		cs = append(cs, c)
	}
	return cs
}

// runCharts: CPU per input packet (net of other work) and loss per
// variant, grouped by fan-out, size and rate.
func runCharts(t table) []*chart {
	cpu := newChart("cpu.svg", "Relay-core CPU per input datagram (net of other work)", "µs", false)
	loss := newChart("loss.svg", "Loss (median of repetitions)", "%", false)
	for _, r := range t {
		g := fmt.Sprintf("1→%s %s B %s", r["fanout"], r["size"], pps(r["rate"]))
		cpu.set(r["variant"], g, num(r["ns_per_pkt_net"])/1000)
		loss.set(r["variant"], g, num(r["loss_pct"]))
	}
	return []*chart{cpu, loss}
}

// pps writes a rate as 1k, 30k, 1.5M; "max" stays.
func pps(rate string) string {
	v, err := strconv.Atoi(rate)
	switch {
	case err != nil:
		return rate
	case v >= 1_000_000 && v%100_000 == 0:
		return strconv.FormatFloat(float64(v)/1e6, 'f', -1, 64) + "M"
	case v >= 1000 && v%1000 == 0:
		return strconv.Itoa(v/1000) + "k"
	}
	return rate
}

var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac"}

func write(path string, c *chart) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	c.svg(f)
	return f.Close()
}

// svg draws the chart: bars with their values above them, the legend
// below.
func (c *chart) svg(w io.Writer) {
	const (
		left, top, plotH = 60.0, 40.0, 260.0
		barW, gap        = 14.0, 18.0
	)
	ns := len(c.series)
	groupW := float64(ns)*barW + gap
	for _, g := range c.groups {
		groupW = math.Max(groupW, textW(g)+gap)
	}
	plotW := math.Max(float64(len(c.groups))*groupW, textW(c.title)*1.3)
	legendW := 0.0
	for _, name := range c.series {
		legendW = math.Max(legendW, textW(name)+24)
	}
	cols := max(1, int(plotW/legendW))
	width := left + plotW + 20
	legendRows := (ns + cols - 1) / cols
	height := top + plotH + 50 + float64(legendRows)*18 + 10

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range c.val {
		for _, v := range s {
			if !math.IsNaN(v) && (!c.log || v > 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(hi, -1) {
		lo, hi = 0, 1
	}
	var y func(v float64) float64
	var ticks []float64
	if c.log {
		lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 1e-3))))
		hi = math.Pow(10, math.Ceil(math.Log10(hi*1.01)))
		y = func(v float64) float64 {
			v = math.Max(v, lo)
			return top + plotH - plotH*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
		}
		for t := lo; t <= hi*1.001; t *= 10 {
			ticks = append(ticks, t)
		}
	} else {
		lo = 0
		step := niceStep(hi / 5)
		hi = math.Max(step, math.Ceil(hi*1.05/step)*step)
		y = func(v float64) float64 { return top + plotH - plotH*v/hi }
		for t := 0.0; t <= hi*1.0001; t += step {
			ticks = append(ticks, t)
		}
	}

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.title))
	fmt.Fprintf(w, `<text x="10" y="%.0f" transform="rotate(-90 10 %.0f)" text-anchor="middle">%s</text>`+"\n",
		top+plotH/2, top+plotH/2, html.EscapeString(c.unit))
	for _, t := range ticks {
		fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+plotW, y(t), y(t))
		fmt.Fprintf(w, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-4, y(t)+4, label(t))
	}
	for g, name := range c.groups {
		x0 := left + float64(g)*groupW + gap/2
		for s := range c.series {
			v := c.val[s][g]
			if math.IsNaN(v) {
				continue
			}
			x := x0 + float64(s)*barW
			yt := y(v)
			fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x, yt, barW-2, math.Max(top+plotH-yt, 0.5), palette[s%len(palette)],
				html.EscapeString(c.series[s]), html.EscapeString(name), label(v))
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" font-size="8" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
				x+barW/2+2, yt-2, x+barW/2+2, yt-2, label(v))
		}
		fmt.Fprintf(w, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			x0+float64(ns)*barW/2, top+plotH+16, html.EscapeString(name))
	}
	fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, left+plotW, top+plotH, top+plotH)
	for s, name := range c.series {
		lx := left + float64(s%cols)*legendW
		ly := top + plotH + 40 + float64(s/cols)*18
		fmt.Fprintf(w, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/>`+"\n", lx, ly-9, palette[s%len(palette)])
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f">%s</text>`+"\n", lx+14, ly, html.EscapeString(name))
	}
	fmt.Fprintln(w, "</svg>")
}

// textW estimates the width of s in 11-pixel sans-serif.
func textW(s string) float64 { return 6.5 * float64(len([]rune(s))) }

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// label writes a value with as few digits as it needs.
func label(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}
