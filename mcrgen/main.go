package mcrgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/internal/buildinfo"
	"github.com/mcrelay/mcr/internal/manpage"
	"github.com/mcrelay/mcr/internal/tty"
)

// Exit statuses of Main.
const (
	exitOK    = 0
	exitError = 1 // the run could not start or a send/receive failed
	exitUsage = 2
)

// Main runs mcrgen with args (the command line without the program name)
// and returns its exit status: 0 when the run happened, even with loss or
// corruption (the JSON line on stdout says so; scripts read it), 1 when it
// could not run or a send or receive failed, 2 on usage errors. The end of
// ctx (Ctrl-C) stops a run early; its results are still printed.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "mcrgen",
		Short: "Send and receive verifiable UDP test streams",
		Long: `mcrgen sends paced UDP streams whose payloads carry a stream id, a sequence
number, a timestamp and a checksum, and receives them counting loss,
duplicates, reordering, corruption and latency. Both print one JSON line on
stdout for scripts.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(sendCommand(stdout, stderr), recvCommand(stdout, stderr), versionCommand(stdout),
		manpage.Command(root, buildinfo.Version(Version)))
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "mcrgen: %v\n", err)
	var runErr runError
	if errors.As(err, &runErr) {
		return exitError
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return exitUsage
}

// usageError is a bad command line; runError a failed run. Errors of
// neither type come from cobra and are usage errors.
type (
	usageError struct{ error }
	runError   struct{ error }
)

func (e usageError) Unwrap() error { return e.error }
func (e runError) Unwrap() error   { return e.error }

// addrFlag parses an optional IP address flag value.
func addrFlag(name, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, usageError{fmt.Errorf("--%s %q is not an IP address", name, s)}
	}
	return a, nil
}

func sendCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg           SendConfig
		group, source string
	)
	cmd := &cobra.Command{
		Use:   "send --interface IF --group G --port P",
		Short: "Send a paced stream of verifiable datagrams",
		Long: `Send a paced stream of verifiable datagrams to a multicast group or unicast
address, until --count datagrams are sent, --duration passes or Ctrl-C.
Prints a summary on stderr and {"sent":N,"pps":X,"bytes":B} on stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Group, err = addrFlag("group", group); err != nil {
				return err
			}
			if cfg.Source, err = addrFlag("source-addr", source); err != nil {
				return err
			}
			if !cmd.Flags().Changed("stream-id") {
				cfg.StreamID = uint16(rand.Uint32())
			}
			if err := cfg.check(); err != nil {
				return usageError{err}
			}
			return runSend(cmd.Context(), cfg, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Interface, "interface", "", "interface to send on")
	f.StringVar(&group, "group", "", "destination: multicast group or unicast address, IPv4 or IPv6")
	f.IntVar(&cfg.Port, "port", 0, "UDP destination port")
	f.StringVar(&source, "source-addr", "", "local address to send from")
	f.IntVar(&cfg.SourcePort, "source-port", 0, "local UDP port to send from (default: an ephemeral port)")
	f.Float64Var(&cfg.Rate, "rate", 1000, "datagrams per second; 0 sends as fast as possible")
	f.Uint64Var(&cfg.Count, "count", 0, "datagrams to send; 0 for no limit")
	f.IntVar(&cfg.Size, "size", 1316, fmt.Sprintf("payload bytes: %d..%d, or 0 for empty datagrams (default: 7 MPEG-TS packets)", HeaderSize, MaxSize))
	f.IntVar(&cfg.TTL, "ttl", 0, "TTL / hop limit; 0 for the kernel's default (1 for multicast)")
	f.Uint16Var(&cfg.StreamID, "stream-id", 0, "stream id in the payloads (default random)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (with a rate: after rate×duration datagrams); 0 for no limit")
	f.IntSliceVar(&cfg.HopCPUs, "hop-cpus", nil, "move the sender between these CPUs, e.g. 0,1: the stream then reaches the receiving side on each in turn (veth, tun)")
	f.IntVar(&cfg.HopEvery, "hop-every", DefaultHopEvery, "datagrams sent on each CPU of --hop-cpus before moving to the next")
	for _, name := range []string{"interface", "group", "port"} {
		must(cmd.MarkFlagRequired(name))
	}
	return cmd
}

func runSend(ctx context.Context, cfg SendConfig, stdout, stderr io.Writer) error {
	s, err := NewSender(cfg)
	if err != nil {
		return runError{err}
	}
	defer s.Close()
	var stop func()
	if tty.IsTerminal(stderr) {
		stop = showProgress(stderr, func(rate float64) string { return sendProgress(s.Sent(), cfg.Count, rate) }, s.Sent)
	}
	res, err := s.Run(ctx)
	if stop != nil {
		stop()
	}
	fmt.Fprintf(stderr, "mcrgen send: %d datagrams of %d bytes to %s on %s in %.3fs: %.1f pps\n",
		res.Sent, cfg.Size, netip.AddrPortFrom(cfg.Group, uint16(cfg.Port)), cfg.Interface, res.Elapsed.Seconds(), res.PPS)
	if jerr := printJSON(stdout, res); jerr != nil {
		return runError{jerr}
	}
	if err != nil {
		return runError{err}
	}
	return nil
}

func recvCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg           RecvConfig
		group, source string
	)
	cmd := &cobra.Command{
		Use:   "recv --interface IF --group G --port P",
		Short: "Receive a stream and count loss, duplicates, reordering, corruption",
		Long: `Receive datagrams for a group (joined on --interface) or a local unicast
address, until --count datagrams arrived, --timeout passed since the start
(an overall deadline) or Ctrl-C. Prints "listening on ..." on stderr once
datagrams are being queued, then one JSON line on stdout:
received, lost, duplicates, reordered, corrupt, pps, bytes, unverified,
streams, latency_us {p50, p99, p999, max}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Group, err = addrFlag("group", group); err != nil {
				return err
			}
			if cfg.Source, err = addrFlag("source", source); err != nil {
				return err
			}
			if err := cfg.check(); err != nil {
				return usageError{err}
			}
			return runRecv(cmd.Context(), cfg, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Interface, "interface", "", "interface to receive on")
	f.StringVar(&group, "group", "", "multicast group to join or local unicast address, IPv4 or IPv6")
	f.IntVar(&cfg.Port, "port", 0, "UDP port")
	f.StringVar(&source, "source", "", "join source-specifically: only datagrams from this sender")
	f.Uint64Var(&cfg.Count, "count", 0, "stop after this many datagrams; 0 for no limit")
	f.DurationVar(&cfg.Timeout, "timeout", 0, "stop this long after the start; 0 for no limit")
	for _, name := range []string{"interface", "group", "port"} {
		must(cmd.MarkFlagRequired(name))
	}
	return cmd
}

func runRecv(ctx context.Context, cfg RecvConfig, stdout, stderr io.Writer) error {
	r, err := NewReceiver(cfg)
	if err != nil {
		return runError{err}
	}
	defer r.Close()
	fmt.Fprintf(stderr, "mcrgen recv: listening on %s on %s\n", netip.AddrPortFrom(cfg.Group, uint16(cfg.Port)), cfg.Interface)
	onTTY := tty.IsTerminal(stderr)
	var stop func()
	if onTTY {
		stop = showProgress(stderr, func(rate float64) string {
			return fmt.Sprintf("%d received, %.0f pps", r.Received(), rate)
		}, r.Received)
	}
	res, err := r.Run(ctx)
	if stop != nil {
		stop()
	}
	if onTTY {
		writeRecvSummary(stderr, res)
	}
	if jerr := printJSON(stdout, res); jerr != nil {
		return runError{jerr}
	}
	if err != nil {
		return runError{err}
	}
	return nil
}

func writeRecvSummary(w io.Writer, r RecvResult) {
	fmt.Fprintf(w, "received %d datagrams (%d bytes) at %.1f pps from %d streams\n", r.Received, r.Bytes, r.PPS, r.Streams)
	fmt.Fprintf(w, "lost %d, duplicates %d, reordered %d, corrupt %d, unverified %d\n",
		r.Lost, r.Duplicates, r.Reordered, r.Corrupt, r.Unverified)
	fmt.Fprintf(w, "latency p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, max %.1f µs\n",
		r.LatencyUS.P50, r.LatencyUS.P99, r.LatencyUS.P999, r.LatencyUS.Max)
}

func printJSON(w io.Writer, v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = w.Write(append(line, '\n'))
	return err
}

// progressEvery is how often the progress line is redrawn.
const progressEvery = 200 * time.Millisecond

// showProgress redraws line on a terminal every progressEvery, passing the
// rate of count over the last period, until stop is called; stop erases
// the line.
func showProgress(w io.Writer, line func(rate float64) string, count func() uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(progressEvery)
		defer ticker.Stop()
		last, lastAt := count(), time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case now := <-ticker.C:
				n := count()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				fmt.Fprintf(w, "\r%s\x1b[K", line(rate))
			}
		}
	}()
	return func() { close(done); <-finished }
}

// sendProgress is the progress line of send: a bar when the count is known.
func sendProgress(sent, count uint64, rate float64) string {
	if count == 0 {
		return fmt.Sprintf("%d sent, %.0f pps", sent, rate)
	}
	const width = 30
	filled := int(sent * width / count)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	return fmt.Sprintf("[%s] %d/%d sent, %.0f pps", bar, sent, count, rate)
}

// must panics on errors only a programming mistake causes.
func must(err error) {
	if err != nil {
		panic(err)
	}
}
