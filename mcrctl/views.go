package mcrctl

import (
	"fmt"
	"io"
	"strings"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
)

// writeRules prints the `list` table: one line per rule, then on note lines
// under it the outputs whose interface is pending or down, those the workers
// cannot send to (failing), and its error (if any), which says why each
// output fails. packets maps rule ids to packets_in from GetStats; a rule
// missing there shows 0.
func writeRules(w io.Writer, rules []controlproto.RuleStatus, packets map[string]uint64, color bool) error {
	t := table{
		header: []string{"ID", "NAME", "STATE", "INPUT", "OUTPUTS", "PACKETS"},
		right:  []bool{false, false, false, false, false, true},
	}
	for _, r := range rules {
		t.add(cell{text: r.ID}, cell{text: orDash(r.Name)}, cell{text: r.State, color: stateColor(r.State)},
			cell{text: formatInput(r.Input)}, cell{text: formatOutputs(r.Outputs, formatOutput)}, cell{text: count(packets[r.ID])})
		if outs := failingOutputs(r); len(outs) > 0 {
			t.addNote("outputs failing: " + formatOutputs(outs, ruleset.Output.Destination))
		}
		for _, state := range []string{controlproto.StatePending, controlproto.StateDown, controlproto.StateIdle} {
			if outs := outputsIn(r, state); len(outs) > 0 {
				t.addNote("outputs " + state + ": " + formatOutputs(outs, ruleset.Output.Destination))
			}
		}
		if r.Error != "" {
			t.addNote("error: " + r.Error)
		}
	}
	return t.write(w, color)
}

// outputsIn returns r's outputs whose interface is in state.
func outputsIn(r controlproto.RuleStatus, state string) []ruleset.Output {
	var outs []ruleset.Output
	for i, s := range r.OutputStates {
		if s == state && i < len(r.Outputs) {
			outs = append(outs, r.Outputs[i])
		}
	}
	return outs
}

// failingOutputs returns r's outputs that the workers report an error for
// and that are not already noted as pending or down.
func failingOutputs(r controlproto.RuleStatus) []ruleset.Output {
	var outs []ruleset.Output
	for i, e := range r.OutputErrors {
		if e == "" || i >= len(r.Outputs) {
			continue
		}
		if i < len(r.OutputStates) && r.OutputStates[i] != controlproto.StateActive && r.OutputStates[i] != controlproto.StateIdle {
			continue
		}
		outs = append(outs, r.Outputs[i])
	}
	return outs
}

// formatInput prints an input like an output destination, with its source
// when it has one: "239.1.1.1:5000@eth0 from 10.0.0.9".
func formatInput(in ruleset.Input) string {
	s := ruleset.Output{Interface: in.Interface, Group: in.Group, Port: in.Port}.Destination()
	if in.Source != "" {
		s += " from " + in.Source
	}
	return s
}

// maxListedOutputs is how many outputs `list` names before summarising the
// rest as "+N more"; `stats` lists them all.
const maxListedOutputs = 2

// formatOutputs names the first maxListedOutputs outputs with name: in the
// OUTPUTS column with the source they send from (formatOutput), in the
// notes under a rule by their destination alone.
func formatOutputs(outs []ruleset.Output, name func(ruleset.Output) string) string {
	names := make([]string, 0, maxListedOutputs)
	for i, o := range outs {
		if i == maxListedOutputs {
			return strings.Join(names, ", ") + fmt.Sprintf(" +%d more", len(outs)-i)
		}
		names = append(names, name(o))
	}
	return strings.Join(names, ", ")
}

// formatOutput prints an output's destination with the source it sends
// from when the rule fixes one: "239.2.2.2:6000@eth1 from 10.1.0.1:5001",
// "… from port 5001", "… keeping the source"; "when joined" after it for
// an output that follows its receivers.
func formatOutput(o ruleset.Output) string {
	if o.WhenJoined {
		o.WhenJoined = false
		return formatOutput(o) + " when joined"
	}
	s := o.Destination()
	switch {
	case o.PreserveSource:
		return s + " keeping the source"
	case o.Source != "" && o.SourcePort != 0:
		src := o.Source
		if strings.Contains(src, ":") {
			src = "[" + src + "]"
		}
		return fmt.Sprintf("%s from %s:%d", s, src, o.SourcePort)
	case o.Source != "":
		return s + " from " + o.Source
	case o.SourcePort != 0:
		return fmt.Sprintf("%s from port %d", s, o.SourcePort)
	}
	return s
}

// writeWorkers prints the `workers` table.
func writeWorkers(w io.Writer, workers []controlproto.WorkerInfo, color bool) error {
	t := table{
		header: []string{"WORKER", "PID", "CORE", "STATE", "RESTARTS", "UPTIME", "BACKEND", "RULESET HASH", "IN SYNC"},
		right:  []bool{true, true, true, false, true, true, false, false, false},
	}
	for _, wk := range workers {
		t.add(cell{text: fmt.Sprint(wk.Worker)}, cell{text: fmt.Sprint(wk.PID)}, cell{text: fmt.Sprint(wk.Core)},
			cell{text: wk.State, color: stateColor(wk.State)}, cell{text: fmt.Sprint(wk.Restarts)},
			cell{text: formatUptime(wk.UptimeS)}, cell{text: orDash(wk.Backend)}, cell{text: orDash(wk.RulesetHash)},
			cell{text: yesNo(wk.InSync), color: syncColor(wk.InSync)})
	}
	return t.write(w, color)
}

func syncColor(inSync bool) string {
	if inSync {
		return ""
	}
	return colorRed
}

// dropCell shows a drop or error count, red on a terminal when not zero.
func dropCell(n uint64) cell {
	if n == 0 {
		return cell{text: "0"}
	}
	return cell{text: count(n), color: colorRed}
}

// writeStats prints a GetStats report: the rule table (each rule followed
// by its outputs, indented), the worker table and a totals line.
func writeStats(w io.Writer, r stats.Report, color bool) error {
	rules := table{
		header: []string{"RULE / OUTPUT", "PACKETS", "BYTES", "RATE", "BANDWIDTH", "DROPS"},
		right:  []bool{false, true, true, true, true, true},
	}
	for _, rule := range r.Rules {
		var drops uint64
		for _, o := range rule.Outputs {
			drops += o.Errors
		}
		rules.add(append(plain(rule.ID, count(rule.PacketsIn), formatBytes(rule.BytesIn),
			formatPPS(rule.PPS), formatBPS(rule.BPS)), dropCell(drops))...)
		for _, o := range rule.Outputs {
			if o.State != "" {
				o.Destination += " (" + o.State + ")"
			}
			rules.add(append(plain("  "+o.Destination, count(o.PacketsOut), formatBytes(o.BytesOut), "", ""),
				dropCell(o.Errors))...)
		}
		if rule.Error != "" {
			rules.addNote("error: " + rule.Error)
		}
	}
	workers := table{
		header: []string{"WORKER", "CORE", "RX", "NO-MATCH", "MALFORMED", "FRAGMENTS", "NOT-UDP", "VLAN", "BAD-CSUM",
			"KDROPS", "NOBUF", "EGRESS-ERR", "LOOPS", "TTL-EXPIRED"},
		right: []bool{true, true, true, true, true, true, true, true, true, true, true, true, true, true},
	}
	for _, wk := range r.Workers {
		c := wk.WorkerCounters
		workers.add(append(plain(fmt.Sprint(wk.Worker), fmt.Sprint(wk.Core), count(c.RxPackets), count(c.NoMatch),
			count(c.Malformed), count(c.Fragments), count(c.NotUDP), count(c.VLANTagged), count(c.BadChecksum)),
			dropCell(c.KernelDrops), dropCell(c.BufferExhausted), dropCell(c.EgressErrors), dropCell(c.Loops),
			dropCell(c.TTLExpired))...)
	}
	if err := rules.write(w, color); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return err
	}
	if err := workers.write(w, color); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\ntotal: %s in, %s out, %s\n", counted(r.Totals.PacketsIn, "packet"),
		counted(r.Totals.PacketsOut, "packet"), counted(r.Totals.KernelDrops, "kernel drop"))
	if err == nil && r.Totals.Rules != (stats.StateCounts{}) {
		_, err = fmt.Fprintf(w, "rules: %s; outputs: %s\n", formatStates(r.Totals.Rules, false), formatStates(r.Totals.Outputs, true))
	}
	if ns := r.Namespace; err == nil && ns != nil && ns.IPReasmFails > 0 {
		// Datagrams no worker saw: incomplete IPv4 fragments.
		_, err = fmt.Fprintf(w, "namespace: %d IPv4 reassembly failures (%d timed out)\n", ns.IPReasmFails, ns.IPReasmTimeout)
	}
	return err
}

// formatStates prints counts by state: "2 active, 1 pending, 0 down", with
// the failing count after the active one for outputs (and before it the
// idle count, when there are idle outputs).
func formatStates(c stats.StateCounts, outputs bool) string {
	s := fmt.Sprintf("%d active", c.Active)
	if outputs && c.Idle > 0 {
		s += fmt.Sprintf(", %d idle", c.Idle)
	}
	if outputs {
		s += fmt.Sprintf(", %d failing", c.Failing)
	}
	return s + fmt.Sprintf(", %d pending, %d down", c.Pending, c.Down)
}
