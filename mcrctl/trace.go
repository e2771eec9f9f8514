package mcrctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/pcap"
	"github.com/mcrelay/mcr/tracing"
)

// traceSettings are what a trace or capture asks for and when it stops.
type traceSettings struct {
	limit, snaplen int
	count          int           // events (trace) or packets (capture) to stop after; 0: no limit
	duration       time.Duration // stop after this long; 0: no limit
}

// traceTotals is what a trace session reports at its end.
type traceTotals struct {
	lost, missed uint64
}

// traceRule enables the trace of rule id on c's connection, polls its
// events every opts.tracePoll and hands each to each, which says whether
// it counted towards s.count. It stops when ctx ends (Ctrl-C: a normal
// end), after s.count counted events or s.duration, and then disables the
// trace; closing the connection would end it too.
func (c *cli) traceRule(ctx context.Context, id string, s traceSettings, each func(tracing.Event) (bool, error)) (traceTotals, error) {
	var tot traceTotals
	var res controlproto.TraceResult
	req := controlproto.Request{Command: controlproto.CmdEnableTrace, ID: id, Limit: s.limit, Snaplen: s.snaplen}
	if err := c.call(ctx, req, &res); err != nil {
		return tot, err
	}
	defer func() {
		// Without ctx's cancellation: Ctrl-C ends the trace, politely.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = c.call(dctx, controlproto.Request{Command: controlproto.CmdDisableTrace, ID: id}, nil)
	}()
	since := res.Next
	var stop <-chan time.Time
	if s.duration > 0 {
		t := time.NewTimer(s.duration)
		defer t.Stop()
		stop = t.C
	}
	tick := time.NewTicker(c.opts.tracePoll)
	defer tick.Stop()
	counted := 0
	for {
		select {
		case <-ctx.Done():
			return tot, nil
		case <-stop:
			return tot, nil
		case <-tick.C:
		}
		res = controlproto.TraceResult{}
		req := controlproto.Request{Command: controlproto.CmdGetTrace, ID: id, Since: since}
		if err := c.call(ctx, req, &res); err != nil {
			if ctx.Err() != nil {
				return tot, nil
			}
			return tot, err
		}
		if !res.Enabled {
			return tot, fmt.Errorf("the trace of rule %q ended in the daemon", id)
		}
		since = res.Next
		tot.lost, tot.missed = res.Lost, tot.missed+res.Missed
		for _, e := range res.Events {
			ok, err := each(e)
			if err != nil {
				return tot, err
			}
			if ok {
				if counted++; s.count > 0 && counted >= s.count {
					return tot, nil
				}
			}
		}
	}
}

// noteTotals tells on stderr what a trace could not show.
func (c *cli) noteTotals(tot traceTotals) {
	if tot.lost > 0 {
		fmt.Fprintf(c.stderr, "mcrctl: %s lost: the workers' trace rings were full (raise --limit or lower the rate)\n", counted(tot.lost, "event"))
	}
	if tot.missed > 0 {
		fmt.Fprintf(c.stderr, "mcrctl: %s missed: the daemon's buffer of --limit events overflowed between two reads\n", counted(tot.missed, "event"))
	}
}

func (c *cli) traceCommand() *cobra.Command {
	var (
		s      traceSettings
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "trace RULE [--follow] [--count N] [--json]",
		Short: "Show what happens to a rule's packets, as it happens",
		Long: `Trace a rule: print one line per event as the workers see them: each datagram
received, sent to an output (with its GSO segment), or dropped and why, and
the packets on the rule's input interface that match no rule (wrong group,
port or source). Events reach mcrctl once per stats interval of the daemon.

Without --follow the trace stops after --count events (default 100) or
--duration (default 10s); with --follow it runs until Ctrl-C, or --count
events when given. The daemon stops tracing when mcrctl ends or its
connection drops. With --json each event is one JSON object per line.`,
		Example: `  mcrctl trace market-a
  mcrctl trace market-a --follow
  mcrctl trace market-a --count 10 --json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeRuleIDs,
	}
	cmd.RunE = runE(func(ctx context.Context, args []string) error {
		changed := cmd.Flags().Changed
		if !follow {
			if !changed("count") {
				s.count = 100
			}
			if !changed("duration") {
				s.duration = 10 * time.Second
			}
		}
		if s.count < 0 {
			return usageErrorf("--count %d: must be 0 or more", s.count)
		}
		out := bufio.NewWriter(c.stdout)
		enc := json.NewEncoder(out)
		tot, err := c.traceRule(ctx, args[0], s, func(e tracing.Event) (bool, error) {
			var err error
			if c.json {
				err = enc.Encode(e)
			} else {
				_, err = io.WriteString(out, formatEvent(e)+"\n")
			}
			return true, err
		})
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
		c.noteTotals(tot)
		return err
	})
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "print events until Ctrl-C")
	f.IntVarP(&s.count, "count", "c", 0, "stop after `N` events (0: no limit)")
	f.DurationVar(&s.duration, "duration", 0, "stop after this long (0: no limit)")
	f.IntVar(&s.limit, "limit", 0, "events the daemon keeps between two reads (0: its default, 1000)")
	f.IntVar(&s.snaplen, "snaplen", 0, "bytes of each datagram's payload to include (--json: \"data\", base64)")
	return cmd
}

func (c *cli) captureCommand() *cobra.Command {
	var (
		s      traceSettings
		write  string
		output int
		input  bool
	)
	cmd := &cobra.Command{
		Use:   "capture RULE --write FILE.pcap [--count N] [--output K] [--input]",
		Short: "Write a rule's relayed datagrams (or its input) to a pcap file",
		Long: `Capture a rule's datagrams as the relay sends them (every output, or output K
with --output K) or as they arrive (--input), and write them to a pcap file
that tcpdump, tshark and Wireshark read (link type raw IP). --write - writes
to stdout, so "mcrctl capture r -w - | tshark -r -" works.

Each datagram's IP and UDP headers are rebuilt from what the trace knows:
addresses and ports, lengths, TTL 64; a relayed datagram's source address is
0.0.0.0 (or ::) when the kernel picks it. Payloads are cut at --snaplen bytes
(the pcap records the real length). The capture stops after --count
datagrams (default 1000), --duration (default 1m) or Ctrl-C. Datagrams the
daemon could not record are counted and reported at the end; the daemon
never waits for mcrctl.`,
		Example: `  mcrctl capture market-a --write /tmp/market-a.pcap --count 100
  mcrctl capture market-a --input -w - | tcpdump -nn -r -`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeRuleIDs,
	}
	cmd.RunE = runE(func(ctx context.Context, args []string) error {
		outputGiven := cmd.Flags().Changed("output")
		switch {
		case write == "":
			return usageErrorf("capture needs --write FILE (- for stdout)")
		case input && outputGiven:
			return usageErrorf("--input and --output: give one")
		case output < 0:
			return usageErrorf("--output %d: must be 0 or more", output)
		case s.count < 0:
			return usageErrorf("--count %d: must be 0 or more", s.count)
		case s.snaplen < 1 || s.snaplen > controlproto.MaxTraceSnaplen:
			return usageErrorf("--snaplen %d: must be 1..%d", s.snaplen, controlproto.MaxTraceSnaplen)
		}
		want := func(e tracing.Event) bool {
			if input {
				return e.Kind == tracing.Received
			}
			return e.Kind == tracing.Sent && e.Output != nil && (!outputGiven || *e.Output == output)
		}
		return c.capture(ctx, args[0], write, s, want)
	})
	f := cmd.Flags()
	f.StringVarP(&write, "write", "w", "", "pcap file to write (`FILE`; - for stdout)")
	f.IntVarP(&s.count, "count", "c", 1000, "stop after `N` datagrams (0: no limit)")
	f.DurationVar(&s.duration, "duration", time.Minute, "stop after this long (0: no limit)")
	f.IntVar(&output, "output", 0, "capture only output `K` of the rule (from 0, as `mcrctl list` shows them)")
	f.BoolVar(&input, "input", false, "capture the rule's input instead of what it relays")
	f.IntVar(&s.snaplen, "snaplen", 2048, "bytes of each payload to keep")
	f.IntVar(&s.limit, "limit", 0, "datagrams the daemon keeps between two reads (0: as many as 16 MiB of --snaplen hold, at most 10000)")
	return cmd
}

// capture writes the events want picks from rule id's trace to path as
// pcap, and tells on stderr how many it wrote and what it could not.
func (c *cli) capture(ctx context.Context, id, path string, s traceSettings, want func(tracing.Event) bool) error {
	if s.limit == 0 {
		s.limit = min(10000, controlproto.MaxTraceBytes/s.snaplen)
	}
	var w io.Writer = c.stdout
	name := "stdout"
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w, name = f, path
	}
	bw := bufio.NewWriter(w)
	pw, err := pcap.NewWriter(bw)
	if err != nil {
		return err
	}
	n := 0
	var pkt []byte
	tot, err := c.traceRule(ctx, id, s, func(e tracing.Event) (bool, error) {
		if !want(e) {
			return false, nil
		}
		src, _ := netip.ParseAddrPort(fillAddr(e.Source, e.Destination))
		dst, _ := netip.ParseAddrPort(e.Destination)
		var origLen int
		pkt, origLen = pcap.AppendUDP(pkt[:0], src, dst, e.Data, e.Size)
		if err := pw.WritePacket(time.Unix(0, e.UnixNano), pkt, origLen); err != nil {
			return false, err
		}
		n++
		return true, bw.Flush() // a reader on a pipe sees each packet at once
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	fmt.Fprintf(c.stderr, "mcrctl: %s of rule %s written to %s\n", counted(n, "datagram"), id, name)
	c.noteTotals(tot)
	return err
}

// fillAddr completes a source the kernel picks the address of (":38349")
// with the unspecified address of the destination's family.
func fillAddr(src, dst string) string {
	if !strings.HasPrefix(src, ":") {
		return src
	}
	if strings.HasPrefix(dst, "[") {
		return "[::]" + src
	}
	return "0.0.0.0" + src
}

// formatEvent is one line of `mcrctl trace`:
//
//	10:30:00.123456 w0 received 10.1.0.1:40000 > 239.1.1.1:5000 1000 B
//	10:30:00.123470 w0 sent out 0 :38349 > 239.2.2.2:6000 1000 B GSO 3/8
//	10:30:00.123470 w0 dropped out 1 output_down > 239.3.3.3:6000 (network is down)
//	10:30:01.002000 w1 unmatched wrong_port 10.1.0.1:40000 > 239.1.1.1:5001 1000 B
//	10:30:01.002010 w1 not_sent out 1 idle > 239.3.3.3:6000 1000 B
func formatEvent(e tracing.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s w%d %s", time.Unix(0, e.UnixNano).Format("15:04:05.000000"), e.Worker, e.Kind)
	if e.Output != nil {
		fmt.Fprintf(&b, " out %d", *e.Output)
	}
	if e.Reason != 0 {
		fmt.Fprintf(&b, " %s", e.Reason)
	}
	switch {
	case e.Source != "" && e.Destination != "":
		fmt.Fprintf(&b, " %s > %s", e.Source, e.Destination)
	case e.Destination != "":
		fmt.Fprintf(&b, " > %s", e.Destination)
	}
	if e.Size > 0 || e.Kind == tracing.Received || e.Kind == tracing.Sent {
		fmt.Fprintf(&b, " %d B", e.Size)
	}
	if e.Segments > 1 {
		fmt.Fprintf(&b, " GSO %d/%d", e.Segment, e.Segments)
	}
	if e.Count > 1 {
		fmt.Fprintf(&b, " ×%d", e.Count)
	}
	if e.Error != "" {
		fmt.Fprintf(&b, " (%s)", e.Error)
	}
	return b.String()
}
