package supervisor

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/supervisor/links"
)

// sentSummary describes what the data plane holds per rule id:
// "in=IFINDEX out=[IFINDEX…]".
func sentSummary(dp *fakeDataPlane) map[string]string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	out := map[string]string{}
	for id, wr := range dp.rules {
		out[id] = fmt.Sprintf("in=%d out=%v", wr.InputIfIndex, wr.OutputIfIndex)
	}
	return out
}

// scriptStep is one event of a scripted sequence and what must hold after
// it.
type scriptStep struct {
	name   string
	do     func(tm *testMaster)
	states map[string]string // rule id → state
	// outputs, when set, is each rule's output states, comma-separated.
	outputs map[string]string
	sent    map[string]string // sentSummary
	joined  []string          // testMaster.joined
	// quiet, when set, means the step must not send anything to the data
	// plane.
	quiet bool
}

func up(name string, index int) func(*testMaster) {
	return func(tm *testMaster) { tm.LinkChanged(links.Link{Name: name, Index: index, Up: true}) }
}

func down(name string, index int) func(*testMaster) {
	return func(tm *testMaster) { tm.LinkChanged(links.Link{Name: name, Index: index, Up: false}) }
}

func gone(name string, index int) func(*testMaster) {
	return func(tm *testMaster) { tm.LinkDeleted(links.Link{Name: name, Index: index}) }
}

func addRules(rules ...ruleset.Rule) func(*testMaster) {
	return func(tm *testMaster) {
		for _, r := range rules {
			if _, err := tm.add(r); err != nil {
				tm.t.Fatalf("add rule %s: %v", r.ID, err)
			}
		}
	}
}

func TestRuleStates(t *testing.T) {
	r1 := testRule("r1", "eth9", "239.1.1.1", 5000, "out0")
	r2 := testRule("r2", "wan", "239.1.1.2", 5000, "out0")
	tests := []struct {
		name  string
		steps []scriptStep
	}{
		{
			name: "interface appears, goes down, comes up, is deleted and recreated",
			steps: []scriptStep{
				{name: "add on a missing interface", do: addRules(r1),
					states: map[string]string{"r1": "pending"}, sent: map[string]string{}},
				{name: "input appears", do: up("eth9", 5),
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "pending"},
					sent: map[string]string{"r1": "in=5 out=[0]"}, joined: []string{"239.1.1.1@5"}},
				{name: "output appears", do: up("out0", 6),
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "active"},
					sent: map[string]string{"r1": "in=5 out=[6]"}, joined: []string{"239.1.1.1@5"}},
				{name: "output down", do: down("out0", 6), quiet: true,
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "down"},
					sent: map[string]string{"r1": "in=5 out=[6]"}, joined: []string{"239.1.1.1@5"}},
				{name: "output up (re-sent: the output's socket is reopened)", do: up("out0", 6),
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "active"},
					sent: map[string]string{"r1": "in=5 out=[6]"}, joined: []string{"239.1.1.1@5"}},
				{name: "input down", do: down("eth9", 5),
					states: map[string]string{"r1": "down"}, sent: map[string]string{"r1": "in=5 out=[6]"}},
				{name: "input up", do: up("eth9", 5),
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=5 out=[6]"},
					joined: []string{"239.1.1.1@5"}},
				{name: "input deleted", do: gone("eth9", 5),
					states: map[string]string{"r1": "pending"}, sent: map[string]string{}},
				{name: "input recreated with a new ifindex", do: up("eth9", 8),
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=8 out=[6]"},
					joined: []string{"239.1.1.1@8"}},
				{name: "output deleted", do: gone("out0", 6),
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "pending"},
					sent: map[string]string{"r1": "in=8 out=[0]"}, joined: []string{"239.1.1.1@8"}},
				{name: "output recreated with a new ifindex", do: up("out0", 9),
					states: map[string]string{"r1": "active"}, outputs: map[string]string{"r1": "active"},
					sent: map[string]string{"r1": "in=8 out=[9]"}, joined: []string{"239.1.1.1@8"}},
			},
		},
		{
			name: "outputs on several interfaces, one of them the input's",
			steps: []scriptStep{
				{name: "rule on missing links", do: addRules(ruleset.Rule{ID: "m", Input: ruleset.Input{Interface: "eth9", Group: "239.1.1.1", Port: 5000},
					Outputs: []ruleset.Output{{Interface: "out0", Group: "239.9.9.9", Port: 9000}, {Interface: "eth9", Group: "239.9.9.9", Port: 9000},
						{Interface: "out0", Group: "239.9.9.8", Port: 9000}}}),
					states: map[string]string{"m": "pending"}, outputs: map[string]string{"m": "pending,pending,pending"},
					sent: map[string]string{}},
				{name: "eth9 appears down", do: down("eth9", 5),
					states: map[string]string{"m": "down"}, outputs: map[string]string{"m": "pending,down,pending"},
					sent: map[string]string{"m": "in=5 out=[0 5 0]"}},
				{name: "out0 appears up", do: up("out0", 6),
					states: map[string]string{"m": "down"}, outputs: map[string]string{"m": "active,down,active"},
					sent: map[string]string{"m": "in=5 out=[6 5 6]"}},
				{name: "eth9 up", do: up("eth9", 5),
					states: map[string]string{"m": "active"}, outputs: map[string]string{"m": "active,active,active"},
					sent: map[string]string{"m": "in=5 out=[6 5 6]"}, joined: []string{"239.1.1.1@5"}},
			},
		},
		{
			name: "events duplicated and out of order",
			steps: []scriptStep{
				{name: "links and rule", do: func(tm *testMaster) { up("eth9", 5)(tm); up("out0", 6)(tm); addRules(r1)(tm) },
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=5 out=[6]"},
					joined: []string{"239.1.1.1@5"}},
				{name: "duplicate up", do: up("eth9", 5), quiet: true,
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=5 out=[6]"},
					joined: []string{"239.1.1.1@5"}},
				{name: "recreated link before the old one's deletion", do: up("eth9", 8),
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=8 out=[6]"},
					joined: []string{"239.1.1.1@8"}},
				{name: "late deletion of the old link", do: gone("eth9", 5), quiet: true,
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=8 out=[6]"},
					joined: []string{"239.1.1.1@8"}},
				{name: "duplicate deletion", do: gone("eth9", 5), quiet: true,
					states: map[string]string{"r1": "active"}, sent: map[string]string{"r1": "in=8 out=[6]"},
					joined: []string{"239.1.1.1@8"}},
				{name: "down twice", do: func(tm *testMaster) { down("eth9", 8)(tm); down("eth9", 8)(tm) },
					states: map[string]string{"r1": "down"}, sent: map[string]string{"r1": "in=8 out=[6]"}},
			},
		},
		{
			name: "rename",
			steps: []scriptStep{
				{name: "eth9 exists", do: func(tm *testMaster) { up("eth9", 5)(tm); addRules(r1, r2)(tm) },
					states: map[string]string{"r1": "active", "r2": "pending"}, sent: map[string]string{"r1": "in=5 out=[0]"},
					joined: []string{"239.1.1.1@5"}},
				{name: "eth9 renamed wan", do: up("wan", 5),
					states: map[string]string{"r1": "pending", "r2": "active"}, sent: map[string]string{"r2": "in=5 out=[0]"},
					joined: []string{"239.1.1.2@5"}},
				{name: "out0 appears, is renamed eth9, and another out0 appears", do: func(tm *testMaster) {
					up("out0", 6)(tm)
					down("eth9", 6)(tm)
					up("out0", 7)(tm)
				},
					states:  map[string]string{"r1": "down", "r2": "active"},
					outputs: map[string]string{"r1": "active", "r2": "active"},
					sent:    map[string]string{"r1": "in=6 out=[7]", "r2": "in=5 out=[7]"},
					joined:  []string{"239.1.1.2@5"}},
			},
		},
		{
			name: "re-list after lost events",
			steps: []scriptStep{
				{name: "rules on two links", do: func(tm *testMaster) { up("eth9", 5)(tm); up("wan", 6)(tm); addRules(r1, r2)(tm) },
					states: map[string]string{"r1": "active", "r2": "active"},
					sent:   map[string]string{"r1": "in=5 out=[0]", "r2": "in=6 out=[0]"},
					joined: []string{"239.1.1.1@5", "239.1.1.2@6"}},
				{name: "listing: eth9 recreated and down, wan gone, out0 there",
					do: func(tm *testMaster) {
						tm.LinksListed([]links.Link{{Name: "eth9", Index: 11, Up: false}, {Name: "out0", Index: 12, Up: true}})
					},
					states: map[string]string{"r1": "down", "r2": "pending"},
					sent:   map[string]string{"r1": "in=11 out=[12]"}},
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm := newTestMaster(t)
			for _, st := range tt.steps {
				tm.dp.updates()
				st.do(tm)
				got := map[string]string{}
				for _, rs := range tm.list() {
					got[rs.ID] = rs.State
				}
				if diff := cmp.Diff(st.states, got); diff != "" {
					t.Errorf("%s: states (-want +got):\n%s", st.name, diff)
				}
				if st.outputs != nil {
					got := map[string]string{}
					for _, rs := range tm.list() {
						got[rs.ID] = strings.Join(rs.OutputStates, ",")
					}
					if diff := cmp.Diff(st.outputs, got); diff != "" {
						t.Errorf("%s: output states (-want +got):\n%s", st.name, diff)
					}
				}
				if diff := cmp.Diff(st.sent, sentSummary(tm.dp)); diff != "" {
					t.Errorf("%s: data plane (-want +got):\n%s", st.name, diff)
				}
				if diff := cmp.Diff(st.joined, tm.joined()); diff != "" {
					t.Errorf("%s: memberships (-want +got):\n%s", st.name, diff)
				}
				if u := tm.dp.updates(); st.quiet && len(u) > 0 {
					t.Errorf("%s: data plane got updates %v, want none", st.name, u)
				}
			}
		})
	}
}

func TestRuleStateTransitionsAreLoggedOnce(t *testing.T) {
	tm := newTestMaster(t)
	addRules(testRule("r1", "eth9", "239.1.1.1", 5000, "out0"))(tm)
	for _, ev := range []func(*testMaster){
		up("eth9", 5), up("eth9", 5), down("eth9", 5), down("eth9", 5), up("eth9", 5),
		gone("eth9", 5), gone("eth9", 5), up("eth9", 8),
	} {
		ev(tm)
	}
	var got []string
	for line := range strings.Lines(tm.log.String()) {
		if strings.Contains(line, `msg="rule state changed"`) {
			f := strings.Fields(line)
			got = append(got, f[len(f)-1]+" "+strings.Fields(line[strings.Index(line, "state="):])[0])
		}
	}
	want := []string{
		"from=pending state=active", "from=active state=down", "from=down state=active",
		"from=active state=pending", "from=pending state=active",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logged transitions (-want +got):\n%s\nlog:\n%s", diff, tm.log)
	}
}

func TestRuleFanoutIDs(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	up("eth8", 6)(tm)
	addRules(
		testRule("a", "eth9", "239.1.1.1", 5000, "out0"),
		testRule("b", "eth9", "239.1.1.2", 5000, "out0"),
		testRule("c", "eth8", "239.1.1.1", 5000, "out0"),
	)(tm)
	a, _ := tm.dp.rule("a")
	b, _ := tm.dp.rule("b")
	c, _ := tm.dp.rule("c")
	if a.FanoutID == 0 || a.FanoutID != b.FanoutID {
		t.Errorf("rules on eth9 got fanout ids %d and %d, want one nonzero id", a.FanoutID, b.FanoutID)
	}
	if c.FanoutID == 0 || c.FanoutID == a.FanoutID {
		t.Errorf("rule on eth8 got fanout id %d (eth9: %d), want another nonzero id", c.FanoutID, a.FanoutID)
	}
	// Recreated: the id of ifindex 5 is released, ifindex 9 gets one.
	gone("eth9", 5)(tm)
	up("eth9", 9)(tm)
	a, _ = tm.dp.rule("a")
	if _, held := tm.master.fanout.byIf[5]; held || a.FanoutID == 0 || a.FanoutID == c.FanoutID {
		t.Errorf("after recreation: fanout ids %v, rule a has %d", tm.master.fanout.byIf, a.FanoutID)
	}
}

func TestRuleMembershipsShared(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	addRules(
		testRule("p5000", "eth9", "239.1.1.1", 5000, "out0"),
		testRule("p5001", "eth9", "239.1.1.1", 5001, "out0"),
		testRule("unicast", "eth9", "10.0.0.1", 5000, "out0"),
		ruleset.Rule{ID: "ssm", Input: ruleset.Input{Interface: "eth9", Group: "232.1.1.1", Port: 5000, Source: "10.0.0.9"},
			Outputs: []ruleset.Output{{Interface: "out0", Group: "239.9.9.9", Port: 9000}}},
		ruleset.Rule{ID: "v6", Input: ruleset.Input{Interface: "eth9", Group: "ff3e::1", Port: 5000},
			Outputs: []ruleset.Output{{Interface: "out0", Group: "239.9.9.9", Port: 9000}}},
	)(tm)
	want := []string{"10.0.0.9>232.1.1.1@5", "239.1.1.1@5", "ff3e::1@5"}
	if diff := cmp.Diff(want, tm.joined()); diff != "" {
		t.Errorf("memberships (-want +got):\n%s", diff)
	}
	if tm.kernel.Opened != 2 {
		t.Errorf("IPv4 and IPv6 groups on one interface opened %d helper sockets, want 2", tm.kernel.Opened)
	}
	tm.remove("p5000")
	if diff := cmp.Diff(want, tm.joined()); diff != "" {
		t.Errorf("after removing one of two rules on 239.1.1.1 (-want +got):\n%s", diff)
	}
	tm.remove("p5001")
	if diff := cmp.Diff([]string{"10.0.0.9>232.1.1.1@5", "ff3e::1@5"}, tm.joined()); diff != "" {
		t.Errorf("after removing both rules on 239.1.1.1 (-want +got):\n%s", diff)
	}
}

func TestRuleJoinFailureIsThatRulesError(t *testing.T) {
	tm := newTestMaster(t)
	tm.kernel.Fail[netip.MustParseAddr("239.6.6.6")] = syscall.EADDRNOTAVAIL
	up("eth9", 5)(tm)
	addRules(
		testRule("bad", "eth9", "239.6.6.6", 5000, "out0"),
		testRule("good", "eth9", "239.1.1.1", 5000, "out0"),
	)(tm)
	state, errText := tm.status(t, "bad")
	want := "join 239.6.6.6 on eth9: cannot assign requested address"
	if state != "active" || errText != want {
		t.Errorf("rule with a failing join: state %q, error %q; want active, %q", state, errText, want)
	}
	if state, errText := tm.status(t, "good"); state != "active" || errText != "" {
		t.Errorf("other rule: state %q, error %q; want active without error", state, errText)
	}
	if _, sent := tm.dp.rule("bad"); !sent {
		t.Error("rule with a failing join was not sent to the data plane (unicast or already-flooded traffic still arrives)")
	}
	// The join is retried when the interface comes back.
	delete(tm.kernel.Fail, netip.MustParseAddr("239.6.6.6"))
	down("eth9", 5)(tm)
	up("eth9", 5)(tm)
	if _, errText := tm.status(t, "bad"); errText != "" {
		t.Errorf("after the interface came back up: error %q, want none", errText)
	}
	if !slices.Contains(tm.joined(), "239.6.6.6@5") {
		t.Errorf("memberships %v lack 239.6.6.6@5", tm.joined())
	}
}

func TestRuleAddErrors(t *testing.T) {
	tm := newTestMaster(t)
	addRules(testRule("a", "eth9", "239.1.1.1", 5000, "out0"))(tm)
	tests := []struct {
		name string
		rule ruleset.Rule
		want *controlproto.Error
	}{
		{"duplicate id", testRule("a", "eth9", "239.1.1.2", 5000, "out0"),
			&controlproto.Error{Code: "already_exists", Message: `rule "a" already exists`}},
		{"duplicate input", testRule("b", "eth9", "239.1.1.1", 5000, "out1"),
			&controlproto.Error{Code: "already_exists", Message: `input 239.1.1.1:5000@eth9 is already used by rule "a"`}},
		{"invalid", testRule("c", "eth9", "239.1.1.3", 0, "out0"),
			&controlproto.Error{Code: "invalid_argument", Message: "input.port: must be 1..65535"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tm.add(tt.rule)
			if diff := cmp.Diff(tt.want, err); diff != "" {
				t.Errorf("add (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(&controlproto.Error{Code: "not_found", Message: `no rule "zz"`}, tm.remove("zz")); diff != "" {
		t.Errorf("remove of a missing rule (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a"}, slices.Collect(maps.Keys(tm.rules))); diff != "" {
		t.Errorf("ruleset after failed adds (-want +got):\n%s", diff)
	}
}

func TestRuleReplaceAppliesOnlyTheDifference(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	addRules(
		testRule("same", "eth9", "239.1.1.1", 5000, "out0"),
		testRule("changed", "eth9", "239.1.1.2", 5000, "out0"),
		testRule("gone", "eth9", "239.1.1.3", 5000, "out0"),
	)(tm)
	tm.dp.updates()
	opened := tm.kernel.Opened

	changed := testRule("changed", "eth9", "239.1.1.2", 5001, "out0") // same group, other port
	// "new" takes the input "gone" had: the diff must free it first.
	res := tm.replace([]ruleset.Rule{
		testRule("same", "eth9", "239.1.1.1", 5000, "out0"),
		changed,
		testRule("new", "eth9", "239.1.1.3", 5000, "out0"),
	})
	if diff := cmp.Diff(controlproto.LoadConfigResult{Added: 2, Removed: 2, Unchanged: 1}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"-gone", "+changed", "+new"}}, tm.dp.updates()); diff != "" {
		t.Errorf("data plane updates (-want +got):\n%s", diff)
	}
	if wr, _ := tm.dp.rule("changed"); wr.Input.Port != 5001 {
		t.Errorf("changed rule in the data plane has input port %d, want 5001", wr.Input.Port)
	}
	if diff := cmp.Diff([]string{"239.1.1.1@5", "239.1.1.2@5", "239.1.1.3@5"}, tm.joined()); diff != "" {
		t.Errorf("memberships (-want +got):\n%s", diff)
	}
	if tm.kernel.Opened != opened {
		t.Errorf("replace opened %d new helper sockets: a group stayed wanted but was left and joined again", tm.kernel.Opened-opened)
	}
	// The same set again changes nothing.
	res = tm.replace(tm.config().Rules)
	if res != (controlproto.LoadConfigResult{Unchanged: 3}) || len(tm.dp.updates()) != 0 {
		t.Errorf("replacing with the same rules: %+v and updates %v, want all unchanged and no update", res, tm.dp.updates())
	}
}

func TestRuleOutputStateTransitionsAreLoggedOnce(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	addRules(ruleset.Rule{ID: "r", Input: ruleset.Input{Interface: "eth9", Group: "239.1.1.1", Port: 5000},
		Outputs: []ruleset.Output{{Interface: "out0", Group: "239.9.9.9", Port: 9000},
			{Interface: "out0", Group: "239.9.9.8", Port: 9000}, {Interface: "out1", Group: "239.9.9.9", Port: 9000}}})(tm)
	for _, ev := range []func(*testMaster){
		up("out0", 6), up("out0", 6), down("out0", 6), down("out0", 6), up("out1", 7),
		gone("out0", 6), gone("out0", 6), up("out0", 8), up("out0", 8),
	} {
		ev(tm)
	}
	var got []string
	for line := range strings.Lines(tm.log.String()) {
		if strings.Contains(line, `msg="output state changed"`) {
			got = append(got, field(line, "interface")+" "+field(line, "from")+">"+field(line, "state"))
		}
	}
	want := []string{
		"out0 pending>active", "out0 active>down", "out1 pending>active",
		"out0 down>pending", "out0 pending>active",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logged output transitions (-want +got):\n%s\nlog:\n%s", diff, tm.log)
	}
}

// field returns the value of key=value in a text log line.
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func TestRuleStateCounts(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	down("eth8", 6)(tm)
	up("out0", 7)(tm)
	addRules(
		testRule("active", "eth9", "239.1.1.1", 5000, "out0"),
		testRule("down", "eth8", "239.1.1.1", 5000, "out1"),
		ruleset.Rule{ID: "pending", Input: ruleset.Input{Interface: "eth7", Group: "239.1.1.1", Port: 5000},
			Outputs: []ruleset.Output{{Interface: "out0", Group: "239.9.9.9", Port: 9000}, {Interface: "eth8", Group: "239.9.9.9", Port: 9000}}},
	)(tm)
	rules, outputs := tm.counts()
	if diff := cmp.Diff(stats.StateCounts{Active: 1, Pending: 1, Down: 1}, rules); diff != "" {
		t.Errorf("rules by state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stats.StateCounts{Active: 2, Pending: 1, Down: 1}, outputs); diff != "" {
		t.Errorf("outputs by state (-want +got):\n%s", diff)
	}
}

// addrAdd, addrDel and addrList script the address events of
// TestRuleAddressChanges.
func addrAdd(index int, prefix string, flags int) func(*testMaster) {
	return func(tm *testMaster) {
		tm.AddrChanged(links.Addr{Index: index, Prefix: netip.MustParsePrefix(prefix), Flags: flags}, true)
	}
}

func addrDel(index int, prefix string) func(*testMaster) {
	return func(tm *testMaster) {
		tm.AddrChanged(links.Addr{Index: index, Prefix: netip.MustParsePrefix(prefix)}, false)
	}
}

func addrList(all ...links.Addr) func(*testMaster) {
	return func(tm *testMaster) { tm.AddrsListed(all) }
}

// TestRuleOutputAddresses follows the addresses of output interfaces
// into the rules sent to the workers (WorkerRule.OutputAddrs): an output
// without a source carries those of its family, and a rule is re-sent
// exactly when they change.
func TestRuleOutputAddresses(t *testing.T) {
	const tentative = 0x40 // IFA_F_TENTATIVE
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	up("out0", 6)(tm)
	up("out1", 7)(tm)
	addrList(links.Addr{Index: 6, Prefix: netip.MustParsePrefix("10.2.0.1/24"), Flags: 0}, links.Addr{Index: 6, Prefix: netip.MustParsePrefix("fd00:2::1/64"), Flags: tentative})(tm)
	fixed := testRule("fixed", "eth9", "239.1.1.2", 5000, "out0")
	fixed.Outputs[0].Source = "10.2.0.1"
	v6 := testRule("v6", "eth9", "239.1.1.4", 5000, "out0")
	v6.Outputs[0].Group = "ff3e::9"
	transparent := testRule("transparent", "eth9", "239.1.1.5", 5000, "out0")
	transparent.Outputs[0].PreserveSource = true
	addRules(testRule("derived", "eth9", "239.1.1.1", 5000, "out0"), fixed, v6, transparent,
		testRule("elsewhere", "eth9", "239.1.1.3", 5000, "out1"))(tm)
	tm.dp.updates()
	addrsOf := func(id string) []string {
		wr, _ := tm.dp.rule(id)
		if wr.OutputAddrs == nil {
			return nil
		}
		return wr.OutputAddrs[0]
	}
	got := map[string][]string{}
	for _, id := range []string{"derived", "fixed", "v6", "transparent", "elsewhere"} {
		if a := addrsOf(id); a != nil {
			got[id] = a
		}
	}
	if diff := cmp.Diff(map[string][]string{"derived": {"10.2.0.1"}, "v6": {"fd00:2::1"}}, got); diff != "" {
		t.Errorf("output addresses (-want +got):\n%s", diff)
	}

	// The steps run in order; want is the ids each step re-sends, with
	// their output's addresses after it.
	steps := []struct {
		name string
		do   func(*testMaster)
		want []string
		// addrs are the addresses of the outputs of derived, v6 and
		// elsewhere after the step.
		addrs [3][]string
	}{
		{"IPv4 address added on out0", addrAdd(6, "10.2.0.9/24", 0), []string{"+derived"},
			[3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"the same event again", addrAdd(6, "10.2.0.9/24", 0), nil,
			[3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"IPv6 address on out0 done with DAD", addrAdd(6, "fd00:2::1/64", 0), nil,
			[3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"IPv4 address removed from out0", addrDel(6, "10.2.0.1/24"), []string{"+derived"},
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"the removal again", addrDel(6, "10.2.0.1/24"), nil,
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"removal of an address never seen", addrDel(6, "10.2.0.7/24"), nil,
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"address on a link no rule uses", addrAdd(99, "10.3.0.1/24", 0), nil,
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"address on out1", addrAdd(7, "10.4.0.1/24", 0), []string{"+elsewhere"},
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, {"10.4.0.1"}}},
		{"re-list that finds nothing new", addrList(
			links.Addr{Index: 6, Prefix: netip.MustParsePrefix("10.2.0.9/24"), Flags: 0}, links.Addr{Index: 6, Prefix: netip.MustParsePrefix("fd00:2::1/64"), Flags: 0},
			links.Addr{Index: 7, Prefix: netip.MustParsePrefix("10.4.0.1/24"), Flags: 0}, links.Addr{Index: 99, Prefix: netip.MustParsePrefix("10.3.0.1/24"), Flags: 0}), nil,
			[3][]string{{"10.2.0.9"}, {"fd00:2::1"}, {"10.4.0.1"}}},
		{"re-list that finds out1's address gone and out0's back", addrList(
			links.Addr{Index: 6, Prefix: netip.MustParsePrefix("10.2.0.9/24"), Flags: 0}, links.Addr{Index: 6, Prefix: netip.MustParsePrefix("10.2.0.1/24"), Flags: 0},
			links.Addr{Index: 6, Prefix: netip.MustParsePrefix("fd00:2::1/64"), Flags: 0}, links.Addr{Index: 99, Prefix: netip.MustParsePrefix("10.3.0.1/24"), Flags: 0}),
			[]string{"+derived", "+elsewhere"}, [3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"out0 down and up: the egress sockets need nothing", func(tm *testMaster) {
			down("out0", 6)(tm)
			up("out0", 6)(tm)
		}, nil, [3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
		{"re-list of links", func(tm *testMaster) {
			tm.LinksListed([]links.Link{{Name: "eth9", Index: 5, Up: true}, {Name: "out0", Index: 6, Up: true}, {Name: "out1", Index: 7, Up: true}})
		}, nil, [3][]string{{"10.2.0.1", "10.2.0.9"}, {"fd00:2::1"}, nil}},
	}
	for _, st := range steps {
		st.do(tm)
		var got []string
		for _, u := range tm.dp.updates() {
			got = append(got, u...)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: updates (-want +got):\n%s", st.name, diff)
		}
		gotAddrs := [3][]string{addrsOf("derived"), addrsOf("v6"), addrsOf("elsewhere")}
		if diff := cmp.Diff(st.addrs, gotAddrs, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: addresses of derived, v6, elsewhere (-want +got):\n%s", st.name, diff)
		}
	}
	// The link listings forgot the addresses of ifindex 99, which they
	// did not list; a re-list forgot out1's, which it did not find; a
	// deletion forgets the link's addresses: the view does not grow with
	// links or addresses that came and went.
	if ixs := tm.addrs.Indexes(); slices.Contains(ixs, 99) {
		t.Errorf("a link listing without ifindex 99 kept its addresses: the view holds addresses of %v", ixs)
	}
	gone("out0", 6)(tm)
	if diff := cmp.Diff([]int(nil), tm.addrs.Indexes()); diff != "" {
		t.Errorf("ifindexes with addresses after out0's deletion (-want +got):\n%s", diff)
	}
}

// TestLoadConfigGivesRuleAnOutput follows the operator guide through a real
// control socket: market-a is added with one output, then the shipped
// example config, in which market-a keeps its id and has two outputs, is
// loaded by path. The reply counts market-a as changed, and ListRules and
// the data plane show both of its outputs. Loading a config where it has one
// output again takes the second one away.
func TestLoadConfigGivesRuleAnOutput(t *testing.T) {
	td := startTestDaemon(t)
	rc := td.dial(t)
	add := `{"command":"AddRule","rule":{"id":"market-a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},` +
		`"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000,"ttl":8}]}}`
	if got, want := rc.call(add), `{"ok":true,"result":{"id":"market-a"}}`; got != want {
		t.Fatalf("AddRule: %s, want %s", got, want)
	}
	example, err := filepath.Abs(filepath.Join("..", "packaging", "mcr.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rc.call(`{"command":"LoadConfig","path":"`+example+`"}`),
		`{"ok":true,"result":{"added":2,"removed":1,"unchanged":0}}`; got != want {
		t.Fatalf("LoadConfig of the example: %s, want %s", got, want)
	}
	states := func() map[string]string {
		var list []controlproto.RuleStatus
		if err := td.client(t).Call(context.Background(), controlproto.Request{Command: "ListRules"}, &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, rs := range list {
			out[rs.ID] = rs.State + " " + strings.Join(rs.OutputStates, ",")
		}
		return out
	}
	want := map[string]string{"market-a": "active active,active", "studio-v6": "pending pending"}
	if diff := cmp.Diff(want, states()); diff != "" {
		t.Errorf("ListRules after loading the example (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"market-a": "in=2 out=[3 3]"}, sentSummary(td.dp)); diff != "" {
		t.Errorf("data plane after loading the example (-want +got):\n%s", diff)
	}

	one := `{"command":"LoadConfig","config":{"rules":[{"id":"market-a","input":{"interface":"eth0","group":"239.1.1.1","port":5000,"source":"10.0.0.9"},` +
		`"outputs":[{"interface":"eth1","group":"10.1.0.50","port":6000}]}]}}`
	if got, want := rc.call(one), `{"ok":true,"result":{"added":1,"removed":2,"unchanged":0}}`; got != want {
		t.Fatalf("LoadConfig with one output: %s, want %s", got, want)
	}
	if diff := cmp.Diff(map[string]string{"market-a": "active active"}, states()); diff != "" {
		t.Errorf("ListRules after taking an output away (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"market-a": "in=2 out=[3]"}, sentSummary(td.dp)); diff != "" {
		t.Errorf("data plane after taking an output away (-want +got):\n%s", diff)
	}
}

// TestSIGHUPGivesRuleAnOutput is the same reload by SIGHUP, on a running
// daemon: market-a added with one output through the control socket, then
// --config replaced by the shipped example and SIGHUP sent. The daemon
// keeps serving, with market-a's two outputs.
func TestSIGHUPGivesRuleAnOutput(t *testing.T) {
	rt := newRunTest(t, `{"rules":[]}`)
	rt.startUntilCleanup()
	var id controlproto.IDResult
	rt.call(controlproto.Request{Command: "AddRule", Rule: &ruleset.Rule{ID: "market-a",
		Input:   ruleset.Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000},
		Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000, TTL: 8}}}}, &id)
	example, err := os.ReadFile(filepath.Join("..", "packaging", "mcr.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	rt.writeConfig(string(example))
	rt.signal(syscall.SIGHUP)
	netnstest.WaitFor(t, 5*time.Second, "the example config reloaded", func() bool {
		return strings.Contains(rt.logs.String(), `msg="config reloaded on SIGHUP"`)
	})
	var list []controlproto.RuleStatus
	rt.call(controlproto.Request{Command: "ListRules"}, &list)
	got := map[string]int{}
	for _, rs := range list {
		got[rs.ID] = len(rs.OutputStates)
	}
	if diff := cmp.Diff(map[string]int{"market-a": 2, "studio-v6": 1}, got); diff != "" {
		t.Errorf("outputs per rule after SIGHUP (-want +got):\n%s", diff)
	}
}

// startUntilCleanup starts the daemon and stops it at the end of the test,
// which fails if the daemon does not return nil within 10 s.
func (rt *runTest) startUntilCleanup() {
	rt.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt.start(ctx)
	rt.t.Cleanup(func() {
		cancel()
		select {
		case err := <-rt.result:
			if err != nil {
				rt.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			rt.t.Error("Run did not return within 10 s of its context ending")
		}
	})
}
