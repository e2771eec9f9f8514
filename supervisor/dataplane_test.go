package supervisor

import (
	"io"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/supervisor/tuning"
)

// TestTuningCheckPassesUpdates: the tuning advice sees the rules on their
// way, and the data plane gets every update unchanged.
func TestTuningCheckPassesUpdates(t *testing.T) {
	dp := newFakeDataPlane()
	c := tuningCheck{dp, tuning.NewCheck(slog.New(slog.NewTextHandler(io.Discard, nil)))}
	rule := func(id string) controlproto.WorkerRule {
		return controlproto.WorkerRule{Rule: ruleset.Rule{ID: id, Input: ruleset.Input{Interface: "mcr-absent0"}}, InputIfIndex: 2}
	}
	c.Update([]controlproto.WorkerRule{rule("a"), rule("b")}, nil)
	c.Update([]controlproto.WorkerRule{rule("a")}, nil)
	c.Update(nil, []string{"b"})
	if diff := cmp.Diff([][]string{{"+a", "+b"}, {"+a"}, {"-b"}}, dp.touched); diff != "" {
		t.Errorf("updates the data plane got (-want +got):\n%s", diff)
	}
}
