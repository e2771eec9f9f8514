package topology

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// TestFailingOutputShown gives a rule one output that works and one the
// workers cannot open (its source address is not on out0): `mcrctl list`
// and ListRules show the failing output's error, with the same text as
// GetStats, and the totals count it as failing, not active.
func TestFailingOutputShown(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	bad := out("239.2.2.3", 6000, outIf)
	bad.Source = "10.99.99.99"
	const id = "mixed"
	path := filepath.Join(t.TempDir(), "rules.json")
	writeConfig(t, path, rule(id, inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf), bad))
	if _, err := d.ctl("config", "load", path); err != nil {
		t.Fatal(err)
	}
	d.waitReady()

	var rs controlproto.RuleStatus
	waitFor(t, forwardReady, "the workers to report the second output's error", func() bool {
		for _, r := range d.rules() {
			if r.ID == id {
				rs = r
			}
		}
		return len(rs.OutputErrors) == 2 && rs.OutputErrors[1] != ""
	})
	if diff := cmp.Diff([]string{"", "bind to source 10.99.99.99: cannot assign requested address"}, rs.OutputErrors); diff != "" {
		t.Errorf("ListRules output_errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{controlproto.StateActive, controlproto.StateActive}, rs.OutputStates); diff != "" {
		t.Errorf("output_states (-want +got):\n%s", diff)
	}
	wantErr := "outputs[1] 239.2.2.3:6000@out0: bind to source 10.99.99.99: cannot assign requested address"
	if rs.Error != wantErr {
		t.Errorf("ListRules error = %q, want %q", rs.Error, wantErr)
	}

	st := d.stats()
	rr := ruleReport(t, st, id)
	if rr.Error != rs.Error || rr.Outputs[0].Error != "" || rr.Outputs[1].Error != rs.OutputErrors[1] {
		t.Errorf("GetStats errors: rule %q, outputs %q and %q; want those ListRules shows", rr.Error, rr.Outputs[0].Error, rr.Outputs[1].Error)
	}
	if diff := cmp.Diff(stats.StateCounts{Active: 1, Failing: 1}, st.Totals.Outputs); diff != "" {
		t.Errorf("totals.outputs (-want +got):\n%s", diff)
	}

	list, err := d.ctl("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n  outputs failing: 239.2.2.3:6000@out0\n", "\n  error: " + wantErr + "\n"} {
		if !strings.Contains(list, want) {
			t.Errorf("mcrctl list lacks %q:\n%s", want, list)
		}
	}
	text, err := d.ctl("stats")
	if err != nil {
		t.Fatal(err)
	}
	if want := "outputs: 1 active, 1 failing, 0 pending, 0 down\n"; !strings.Contains(text, want) {
		t.Errorf("mcrctl stats lacks %q:\n%s", want, text)
	}
}
