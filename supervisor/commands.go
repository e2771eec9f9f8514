package supervisor

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/jsontext"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// Version is the build version GetVersion reports, set at link time:
// go build -ldflags "-X github.com/mcrelay/mcr/supervisor.Version=1.2.0".
var Version = "dev"

// Commit is the source revision GetVersion reports, set at link time like
// Version; "" = the VCS revision Go recorded in the binary, if any.
var Commit = ""

// daemon answers the operator commands (docs/control-protocol.md) over the
// master ruleset, the data plane and the stats aggregator. It is safe for
// concurrent use: the master serialises rule changes, the aggregator and
// the data plane lock their own state.
type daemon struct {
	log        *slog.Logger
	level      *slog.LevelVar
	configPath string // --config: SaveConfig's default path; "" = none
	master     *master
	dp         dataPlane
	stats      *stats.Aggregator
	// autosave saves every change to --config before it is acknowledged;
	// nil without --config or with --config-autosave=false.
	autosave *autosaver
	// netSNMP reads the namespace's /proc/net/snmp for GetStats'
	// namespace counters; nil leaves them out.
	netSNMP func() ([]byte, error)
	// traces owns the packet traces (trace.go); nil: tracing is not
	// available.
	traces *traceSessions
}

// handle answers one request (serve adds the wait for autosave).
func (d *daemon) handle(req controlproto.Request) controlproto.Response {
	switch req.Command {
	case controlproto.CmdPing:
		return controlproto.OK(nil)
	case controlproto.CmdGetVersion:
		return controlproto.OK(versionResult())
	case controlproto.CmdAddRule:
		id, err := d.master.add(*req.Rule)
		if err != nil {
			return controlproto.Response{Error: err}
		}
		return controlproto.OK(controlproto.IDResult{ID: id})
	case controlproto.CmdRemoveRule:
		if err := d.master.remove(req.ID); err != nil {
			return controlproto.Response{Error: err}
		}
		return controlproto.OK(controlproto.IDResult{ID: req.ID})
	case controlproto.CmdListRules:
		return controlproto.OK(d.listRules())
	case controlproto.CmdGetStats:
		return controlproto.OK(d.Report())
	case controlproto.CmdListWorkers:
		return controlproto.OK(d.Workers())
	case controlproto.CmdGetConfig:
		return controlproto.OK(d.master.config())
	case controlproto.CmdLoadConfig:
		return d.loadConfig(req)
	case controlproto.CmdSaveConfig:
		return d.saveConfig(req.Path)
	case controlproto.CmdCheckConfig:
		c, err := d.requestConfig(req)
		if err != nil {
			return controlproto.Response{Error: err}
		}
		return controlproto.OK(controlproto.CheckConfigResult{Rules: len(c.Rules)})
	case controlproto.CmdGetLogLevel:
		return controlproto.OK(controlproto.LogLevelResult{Level: levelName(d.level.Level())})
	case controlproto.CmdSetLogLevel:
		return d.setLogLevel(req.Level)
	case controlproto.CmdListGroups:
		return d.listGroups(req.Interface)
	case controlproto.CmdEnableTrace, controlproto.CmdDisableTrace, controlproto.CmdGetTrace:
		return d.traces.handle(req)
	}
	// DecodeRequest lets only known commands through.
	return controlproto.Fail(controlproto.CodeInternal, "command %q has no handler", req.Command)
}

func versionResult() controlproto.VersionResult {
	v := controlproto.VersionResult{Protocol: controlproto.ProtocolVersion, Version: Version, Commit: Commit, Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok && v.Commit == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				v.Commit = s.Value
			}
		}
	}
	return v
}

// Report is the GetStats result: the rules in id order, the workers in
// slot order, and in the totals the rules and outputs counted by state.
// (Report and Workers make daemon the metricsSource of /metrics.)
func (d *daemon) Report() stats.Report {
	rules := d.master.statsRules()
	infos := d.dp.Workers()
	workers := make([]stats.WorkerDesc, len(infos))
	for i, w := range infos {
		workers[i] = stats.WorkerDesc{Worker: w.Worker, Core: w.Core}
	}
	r := d.stats.Report(rules, workers, time.Now())
	r.Totals.Rules, r.Totals.Outputs = stateCounts(rules, r.Rules)
	r.Namespace = d.namespaceCounters()
	return r
}

// listRules is the ListRules result: the master's rules with their states
// and errors, and what the workers report wrong with each rule and output
// (the errors GetStats shows).
func (d *daemon) listRules() []controlproto.RuleStatus {
	list := d.master.list()
	errs := d.stats.Errors()
	for i := range list {
		rs := &list[i]
		we, ok := errs[rs.ID]
		if !ok {
			continue
		}
		if rs.Error == "" {
			rs.Error = we.Error
		} else {
			rs.Error += "; " + we.Error
		}
		// Errors for other outputs belong to an earlier version of
		// the rule, which the workers have not replaced yet.
		if len(we.Outputs) == len(rs.Outputs) {
			rs.OutputErrors = we.Outputs
		}
	}
	return list
}

// stateCounts counts the report's rules by state, and their outputs by
// state with those whose interface is up but that show a worker's error as
// failing, not active: they do not forward. reports are the aggregator's
// for descs: one per rule, one output per output.
func stateCounts(descs []stats.RuleDesc, reports []stats.RuleReport) (rules, outputs stats.StateCounts) {
	for i, rd := range descs {
		countState(&rules, rd.State)
		for j, o := range rd.Outputs {
			if o.State == controlproto.StateActive && reports[i].Outputs[j].Error != "" {
				outputs.Failing++
				continue
			}
			countState(&outputs, o.State)
		}
	}
	return rules, outputs
}

// ExclusiveDropped is what --exclusive-inputs dropped, per input interface.
func (d *daemon) ExclusiveDropped() map[string]uint64 {
	return d.master.exclusiveDropped()
}

// Workers is the ListWorkers result, never null.
func (d *daemon) Workers() []controlproto.WorkerInfo {
	infos := d.dp.Workers()
	if infos == nil {
		infos = []controlproto.WorkerInfo{}
	}
	return infos
}

// requestConfig returns the config a LoadConfig or CheckConfig request
// names: given inline (DecodeRequest validated it) or read from its path.
func (d *daemon) requestConfig(req controlproto.Request) (ruleset.Config, *controlproto.Error) {
	c := ruleset.Config{}
	if req.Config != nil {
		c = *req.Config
	} else {
		var err error
		if c, err = readConfigFile(req.Path); err != nil {
			// The path is the client's: the message names it cut short.
			msg := strings.ReplaceAll(err.Error(), req.Path, jsontext.Cut(req.Path))
			return ruleset.Config{}, controlproto.Errorf(controlproto.CodeInvalidArgument, "%s", msg)
		}
	}
	if err := d.master.checkServable(c.Rules); err != nil {
		return ruleset.Config{}, controlproto.Errorf(controlproto.CodeInvalidArgument, "%v", err)
	}
	return c, nil
}

// loadConfig replaces the ruleset with a config, validated as a whole
// first: an invalid one changes nothing.
func (d *daemon) loadConfig(req controlproto.Request) controlproto.Response {
	c, perr := d.requestConfig(req)
	if perr != nil {
		return controlproto.Response{Error: perr}
	}
	res := d.master.replace(c.Rules)
	d.master.setQuerierSettings(c.Querier)
	from := req.Path
	if from == "" {
		from = "request"
	}
	d.log.Info("config loaded", "from", from, "added", res.Added, "removed", res.Removed, "unchanged", res.Unchanged)
	return controlproto.OK(res)
}

// saveConfig writes the ruleset to path, or to --config when path is "".
func (d *daemon) saveConfig(path string) controlproto.Response {
	if path == "" {
		path = d.configPath
	}
	if path == "" {
		return controlproto.Fail(controlproto.CodeInvalidArgument, "no path given and mcrd runs without --config")
	}
	var c ruleset.Config
	if err := writeConfigFile(path, func() ([]byte, error) { c = d.master.config(); return ruleset.EncodeConfig(c) }); err != nil {
		return controlproto.Fail(controlproto.CodeInternal, "%v", err)
	}
	d.log.Info("config saved", "path", path, "rules", len(c.Rules))
	return controlproto.OK(controlproto.SaveConfigResult{Path: path, Rules: len(c.Rules)})
}

// logLevels are the levels SetLogLevel accepts, by name.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (d *daemon) setLogLevel(name string) controlproto.Response {
	level, ok := logLevels[name]
	if !ok {
		return controlproto.Fail(controlproto.CodeInvalidArgument, "level %s: must be debug, info, warn or error", jsontext.Quote(name))
	}
	old := d.level.Level()
	d.level.Set(level)
	d.log.Log(context.Background(), max(level, old, slog.LevelInfo), "log level set", "level", name, "was", levelName(old))
	return controlproto.OK(controlproto.LogLevelResult{Level: name})
}

// levelName is the name SetLogLevel takes for level: "debug", "info",
// "warn", "error" (slog's own name, lowercased, for levels in between).
func levelName(l slog.Level) string {
	return strings.ToLower(l.String())
}
