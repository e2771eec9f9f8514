package mcrctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/buildinfo"
	"github.com/mcrelay/mcr/internal/manpage"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// rootCommand builds the command tree of one run. Every RunE returns
// *exitError or nil, so run can tell its errors from cobra's usage errors.
func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mcrctl",
		Short: "Control mcrd, the mcr multicast relay daemon",
		Long: `mcrctl talks to mcrd over its control socket: add and remove relay rules,
show rules, counters and workers, save and load the configuration.

Exit status: 0 success, 1 the daemon answered with an error, 2 usage error,
3 the daemon cannot be reached.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	socket := c.getenv("MCR_SOCKET")
	if socket == "" {
		socket = DefaultSocket
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.socket, "socket", socket, "control socket of mcrd (env MCR_SOCKET)")
	pf.StringVar(&c.netns, "netns", "", "talk to the relay mcrd@`NAME` runs in network namespace NAME (socket "+
		netnsSocket(RuntimeDir, "NAME")+")")
	must(root.RegisterFlagCompletionFunc("netns", c.completeNetns))
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if c.netns == "" {
			return nil
		}
		if cmd.Flags().Changed("socket") {
			return usageErrorf("--socket and --netns both name a socket: give one")
		}
		if err := checkNetnsName(c.netns); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		c.socket = netnsSocket(c.opts.runtimeDir, c.netns)
		return nil
	}
	pf.BoolVar(&c.json, "json", false, "print the daemon's JSON result instead of a table")
	pf.DurationVar(&c.timeout, "timeout", 5*time.Second, "give up on a request to mcrd after this long")

	root.AddCommand(c.addCommand(), c.removeCommand(), c.listCommand(), c.statsCommand(),
		c.workersCommand(), c.pingCommand(), c.versionCommand(), c.configCommand(),
		c.logLevelCommand(), c.groupsCommand(), completionCommand(root), manpage.Command(root, buildinfo.Version(Version)))
	root.AddCommand(c.traceCommand(), c.captureCommand())
	return root
}

// runE adapts a command body to cobra: the body gets the context Main was
// given, and an error that is not already an *exitError (such as a failed
// write to stdout) becomes one with status 1.
func runE(body func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := body(cmd.Context(), args)
		var xe *exitError
		if err != nil && !errors.As(err, &xe) {
			return &exitError{code: exitFailure, err: err}
		}
		return err
	}
}

func (c *cli) addCommand() *cobra.Command {
	var (
		rule     ruleset.Rule
		outputs  []string
		ttl      int
		preserve bool
		joined   bool
	)
	cmd := &cobra.Command{
		Use:   "add --input-interface IF --input-group G --input-port P --outputs G:P:IF[:SP][,G:P:IF[:SP]...]",
		Short: "Add a relay rule and print its id",
		Example: `  mcrctl add --input-interface eth0 --input-group 239.1.1.1 --input-port 5000 \
    --outputs '239.2.2.2:6000:eth1,[ff3e::1]:6000:eth2:5001' --ttl 8 --rule-id market-a
  mcrctl add --input-interface eth0 --input-group 232.1.1.1 --input-port 5000 \
    --outputs 232.2.2.2:5000:eth1 --preserve-source`,
		Args: cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			if ttl < 0 || ttl > 255 {
				return usageErrorf("--ttl %d: must be 0..255", ttl)
			}
			outs, err := ParseOutputs(strings.Join(outputs, ","), ttl, preserve)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			for i := range outs {
				outs[i].WhenJoined = joined
			}
			rule.Outputs = outs
			var res controlproto.IDResult
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdAddRule, Rule: &rule}, &res,
				func() error { return c.println(res.ID) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&rule.Input.Interface, "input-interface", "", "interface the input datagrams arrive on")
	f.StringVar(&rule.Input.Group, "input-group", "", "destination address of the input, IPv4 or IPv6")
	f.IntVar(&rule.Input.Port, "input-port", 0, "UDP destination port of the input")
	f.StringVar(&rule.Input.Source, "input-source", "", "relay only datagrams from this sender (source-specific)")
	f.StringArrayVar(&outputs, "outputs", nil, "comma-separated outputs GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT] (quote it: zsh treats brackets as a glob)")
	f.StringVar(&rule.ID, "rule-id", "", "rule id (default: derived from the input)")
	f.StringVar(&rule.Name, "name", "", "free-text name of the rule")
	f.IntVar(&ttl, "ttl", 0, "multicast TTL / hop limit of every output (default 1 for multicast); with --preserve-source, a cap")
	f.BoolVar(&preserve, "preserve-source", false, "every output keeps each datagram's source address and port (transparent outputs)")
	f.BoolVar(&joined, "when-joined", false, "every output sends only while a receiver on its interface has joined its group (IGMP/MLD)")
	for _, name := range []string{"input-interface", "input-group", "input-port", "outputs"} {
		must(cmd.MarkFlagRequired(name))
	}
	return cmd
}

func (c *cli) removeCommand() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "remove --rule-id ID",
		Short: "Remove a relay rule",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			var res controlproto.IDResult
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdRemoveRule, ID: id}, &res,
				func() error { return c.println("removed " + id) })
		}),
	}
	cmd.Flags().StringVar(&id, "rule-id", "", "id of the rule to remove")
	must(cmd.MarkFlagRequired("rule-id"))
	must(cmd.RegisterFlagCompletionFunc("rule-id", c.completeRuleIDs))
	return cmd
}

// completeNetns offers the namespaces whose relay has a socket.
func (c *cli) completeNetns(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	socks, _ := filepath.Glob(netnsSocket(c.opts.runtimeDir, "*"))
	names := make([]cobra.Completion, len(socks))
	for i, s := range socks {
		names[i] = filepath.Base(filepath.Dir(s))
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeRuleIDs offers the daemon's rule ids, with names as descriptions.
func (c *cli) completeRuleIDs(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var rules []controlproto.RuleStatus
	if err := c.call(cmd.Context(), controlproto.Request{Command: controlproto.CmdListRules}, &rules); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	}
	ids := make([]cobra.Completion, len(rules))
	for i, r := range rules {
		ids[i] = cobra.CompletionWithDesc(r.ID, r.Name)
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

func (c *cli) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List rules with their state and packet counts",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			var rules []controlproto.RuleStatus
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdListRules}, &rules, func() error {
				var report stats.Report
				if err := c.call(ctx, controlproto.Request{Command: controlproto.CmdGetStats}, &report); err != nil {
					return err
				}
				packets := make(map[string]uint64, len(report.Rules))
				for _, r := range report.Rules {
					packets[r.ID] = r.PacketsIn
				}
				return writeRules(c.stdout, rules, packets, c.color(c.stdout))
			})
		}),
	}
}

func (c *cli) statsCommand() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "stats [--watch]",
		Short: "Show per-rule, per-output and per-worker counters",
		Long: `Show per-rule, per-output and per-worker counters.

With --watch the counters are shown again every second: redrawn in place on a
terminal, appended as one snapshot per second otherwise (one JSON document per
line with --json). Ctrl-C ends it with exit status 0.`,
		Args: cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			if watch {
				return c.watchStats(ctx)
			}
			return c.statsSnapshot(ctx, c.stdout, "")
		}),
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "show the counters again every second until Ctrl-C")
	return cmd
}

// statsSnapshot prints one GetStats report after the header.
func (c *cli) statsSnapshot(ctx context.Context, w io.Writer, header string) error {
	var report stats.Report
	return c.query(ctx, controlproto.Request{Command: controlproto.CmdGetStats}, &report, func() error {
		if _, err := io.WriteString(w, header); err != nil {
			return err
		}
		return writeStats(w, report, c.color(c.stdout))
	})
}

// watchStats prints a snapshot every interval until ctx ends. On a terminal
// each snapshot replaces the previous one, like top; elsewhere snapshots are
// appended, each under a timestamp line, or one JSON line each with --json.
// A snapshot is written with one Write so a terminal never shows half of
// one.
func (c *cli) watchStats(ctx context.Context) error {
	redraw := !c.json && c.opts.isTerminal(c.stdout)
	ticker := time.NewTicker(c.opts.watchInterval)
	defer ticker.Stop()
	for first := true; ; first = false {
		var header string
		stamp := c.opts.now().Format("15:04:05")
		switch {
		case c.json:
		case redraw:
			// Cursor home and clear screen (ECMA-48 CUP and ED).
			header = fmt.Sprintf("\x1b[H\x1b[2Jmcr stats at %s, every %v (Ctrl-C to quit)\n\n", stamp, c.opts.watchInterval)
		case first:
			header = "=== " + stamp + "\n"
		default:
			header = "\n=== " + stamp + "\n"
		}
		var buf strings.Builder
		if err := c.statsSnapshot(ctx, &buf, header); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C during a request
			}
			return err
		}
		if _, err := io.WriteString(c.stdout, buf.String()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (c *cli) workersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "workers",
		Short: "Show worker processes: pid, core, state, restarts, uptime, ruleset sync",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			var workers []controlproto.WorkerInfo
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdListWorkers}, &workers,
				func() error { return writeWorkers(c.stdout, workers, c.color(c.stdout)) })
		}),
	}
}

func (c *cli) pingCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ping",
		Short: "Check that mcrd answers",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			start := time.Now()
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdPing}, nil, func() error {
				rtt := time.Since(start).Round(time.Microsecond)
				return c.println(fmt.Sprintf("mcrd on %s answered in %v", c.socket, rtt))
			})
		}),
	}
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the versions of mcrctl and mcrd and their protocol",
		Long: `Show the versions of mcrctl and mcrd and their protocol. mcrctl's own
version is printed even when mcrd cannot be reached; with --json only the
daemon's GetVersion result is printed.`,
		Args: cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			if !c.json {
				if err := c.println(clientVersion()); err != nil {
					return err
				}
			}
			var v controlproto.VersionResult
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdGetVersion}, &v, func() error {
				if v.Protocol != controlproto.ProtocolVersion {
					fmt.Fprintf(c.stderr, "mcrctl: warning: mcrd speaks protocol %d, mcrctl %d\n",
						v.Protocol, controlproto.ProtocolVersion)
				}
				return c.println(daemonVersion(v))
			})
		}),
	}
}

func (c *cli) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Save, load or check the daemon's ruleset configuration",
		Long: `Save, load or check the daemon's ruleset configuration.

Paths are made absolute here, because mcrd resolves them in its own working
directory. "-" as the PATH of load or check sends the config read from
standard input instead of a path.`,
	}
	save := &cobra.Command{
		Use:   "save [PATH]",
		Short: "Write the ruleset to PATH (default: the daemon's --config)",
		Args:  cobra.MaximumNArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			req := controlproto.Request{Command: controlproto.CmdSaveConfig}
			if len(args) == 1 {
				path, err := filepath.Abs(args[0])
				if err != nil {
					return err
				}
				req.Path = path
			}
			var res controlproto.SaveConfigResult
			return c.query(ctx, req, &res, func() error {
				return c.println(fmt.Sprintf("saved %s to %s", counted(res.Rules, "rule"), res.Path))
			})
		}),
	}
	load := &cobra.Command{
		Use:   "load PATH",
		Short: "Replace the ruleset with the one in PATH, atomically",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			req, name, err := c.configRequest(controlproto.CmdLoadConfig, args[0])
			if err != nil {
				return err
			}
			var res controlproto.LoadConfigResult
			return c.query(ctx, req, &res, func() error {
				return c.println(fmt.Sprintf("loaded %s: %d added, %d removed, %d unchanged",
					name, res.Added, res.Removed, res.Unchanged))
			})
		}),
	}
	check := &cobra.Command{
		Use:   "check PATH",
		Short: "Validate the config in PATH without applying it",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(ctx context.Context, args []string) error {
			req, name, err := c.configRequest(controlproto.CmdCheckConfig, args[0])
			if err != nil {
				return err
			}
			var res controlproto.CheckConfigResult
			return c.query(ctx, req, &res, func() error {
				return c.println(fmt.Sprintf("%s: valid, %s", name, counted(res.Rules, "rule")))
			})
		}),
	}
	cmd.AddCommand(save, load, check)
	return cmd
}

// configRequest builds a LoadConfig or CheckConfig request for path: an
// absolute path, or for "-" the config read from stdin. name is how
// messages call the config.
func (c *cli) configRequest(command, path string) (req controlproto.Request, name string, err error) {
	req.Command = command
	if path != "-" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return req, "", err
		}
		req.Path = abs
		return req, abs, nil
	}
	// The config travels inside one request line, which the daemon takes
	// up to controlproto.MaxRequestSize: read no more than would fit, so an
	// endless stdin (`config load - </dev/zero`) fails at once.
	data, err := io.ReadAll(io.LimitReader(c.stdin, controlproto.MaxRequestSize+1))
	if err != nil {
		return req, "", fmt.Errorf("read config from stdin: %w", err)
	}
	if len(data) > controlproto.MaxRequestSize {
		return req, "", fmt.Errorf("config from stdin is larger than %d bytes, the most one request carries: save it to a file and give its path instead of -",
			controlproto.MaxRequestSize)
	}
	cfg, err := ruleset.DecodeConfig(data)
	if err != nil {
		// The check the daemon would make, failing the same way (status 1).
		return req, "", fmt.Errorf("stdin: %w", err)
	}
	req.Config = &cfg
	return req, "stdin", nil
}

// logLevels are the levels `log-level set` completes; the daemon decides
// which it accepts.
var logLevels = []string{"debug", "info", "warn", "error"}

func (c *cli) logLevelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log-level",
		Short: "Get or set the daemon's log level",
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "Print the daemon's log level",
		Args:  cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			var res controlproto.LogLevelResult
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdGetLogLevel}, &res,
				func() error { return c.println(res.Level) })
		}),
	}
	set := &cobra.Command{
		Use:       "set LEVEL",
		Short:     "Set the daemon's log level: " + strings.Join(logLevels, ", "),
		Args:      cobra.ExactArgs(1),
		ValidArgs: logLevels,
		RunE: runE(func(ctx context.Context, args []string) error {
			var res controlproto.LogLevelResult
			return c.query(ctx, controlproto.Request{Command: controlproto.CmdSetLogLevel, Level: args[0]}, &res,
				func() error { return c.println("log level set to " + res.Level) })
		}),
	}
	cmd.AddCommand(get, set)
	return cmd
}

func completionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a shell completion script. For example:

  mcrctl completion bash > /etc/bash_completion.d/mcrctl
  mcrctl completion zsh > "${fpath[1]}/_mcrctl"
  mcrctl completion fish > ~/.config/fish/completions/mcrctl.fish`,
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: runE(func(_ context.Context, args []string) error {
			w := root.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			}
			return root.GenFishCompletion(w, true)
		}),
	}
}

func (c *cli) println(s string) error {
	_, err := fmt.Fprintln(c.stdout, s)
	return err
}

// must panics on errors that only a programming mistake can cause, such as
// marking a flag that does not exist as required.
func must(err error) {
	if err != nil {
		panic(err)
	}
}
