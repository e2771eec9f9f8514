package controlproto

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/ruleset"
)

// testRules returns n distinct resolved rules with two outputs each.
func testRules(n int) []WorkerRule {
	rules := make([]WorkerRule, n)
	for i := range rules {
		r := ruleset.Rule{
			Name: fmt.Sprintf("stream %d", i),
			Input: ruleset.Input{
				Interface: "eth0",
				Group:     fmt.Sprintf("239.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
				Port:      5000,
			},
			Outputs: []ruleset.Output{
				{Interface: "eth1", Group: "239.2.2.2", Port: 6000 + i%1000, TTL: 8},
				{Interface: "eth2", Group: "10.1.0.50", Port: 6000},
			},
		}
		r.Normalize()
		rules[i] = WorkerRule{Rule: r, InputIfIndex: 2, FanoutID: 7, OutputIfIndex: []int{3, 4},
			OutputAddrs: [][]string{{"10.1.0.9", "10.1.0.8"}, {}}}
	}
	return rules
}

func TestHashWorkerRules(t *testing.T) {
	rules := testRules(3)
	base := HashWorkerRules(rules)
	if len(base) != 16 {
		t.Errorf("hash %q is not 16 hex digits", base)
	}
	if got := HashWorkerRules([]WorkerRule{rules[2], rules[0], rules[1]}); got != base {
		t.Errorf("hash depends on order: %s vs %s", got, base)
	}
	// A rule reaching the worker through JSON hashes the same.
	var decoded []WorkerRule
	enc, _ := json.Marshal(rules)
	if err := json.Unmarshal(enc, &decoded); err != nil {
		t.Fatal(err)
	}
	if got := HashWorkerRules(decoded); got != base {
		t.Errorf("hash changed through JSON: %s vs %s", got, base)
	}

	changes := map[string]func(r *WorkerRule){
		"input ifindex":  func(r *WorkerRule) { r.InputIfIndex = 9 },
		"fanout id":      func(r *WorkerRule) { r.FanoutID = 8 },
		"output ifindex": func(r *WorkerRule) { r.OutputIfIndex = []int{3, 5} },
		"output missing": func(r *WorkerRule) { r.OutputIfIndex = []int{3} },
		"output address changed": func(r *WorkerRule) {
			r.OutputAddrs = [][]string{{"10.1.0.9", "10.1.0.7"}, {}}
		},
		"output address moved": func(r *WorkerRule) {
			r.OutputAddrs = [][]string{{"10.1.0.9"}, {"10.1.0.8"}}
		},
		"output addresses unknown": func(r *WorkerRule) { r.OutputAddrs = nil },
		"output port": func(r *WorkerRule) {
			r.Outputs = []ruleset.Output{r.Outputs[0], {Interface: "eth2", Group: "10.1.0.50", Port: 6001}}
		},
		"rule name":       func(r *WorkerRule) { r.Name = "renamed" },
		"input interface": func(r *WorkerRule) { r.Input.Interface = "eth9" },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			changed := slices.Clone(rules)
			changed[1].OutputIfIndex = slices.Clone(changed[1].OutputIfIndex)
			change(&changed[1])
			if got := HashWorkerRules(changed); got == base {
				t.Errorf("changing the %s left the hash at %s", name, got)
			}
		})
	}
	if HashWorkerRules(nil) != HashWorkerRules([]WorkerRule{}) {
		t.Error("nil and empty rulesets hash differently")
	}
}

// encodeAll encodes cmds as frames, checking each body against maxBody,
// and decodes them back.
func encodeAll(t *testing.T, cmds []WorkerCommand, maxBody int) []WorkerCommand {
	t.Helper()
	var out []WorkerCommand
	for i := range cmds {
		frame, err := AppendFrame(nil, &cmds[i])
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if body := len(frame) - frameHeaderSize; body > maxBody {
			t.Fatalf("part %d: body of %d bytes, limit %d", i, body, maxBody)
		}
		var back WorkerCommand
		if err := json.Unmarshal(frame[frameHeaderSize:], &back); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		out = append(out, back)
	}
	return out
}

// assemble feeds cmds to a new SyncAssembler and returns the ruleset.
func assemble(t *testing.T, cmds []WorkerCommand) []WorkerRule {
	t.Helper()
	var a SyncAssembler
	for i := range cmds {
		rules, done, err := a.Add(&cmds[i])
		if err != nil {
			t.Fatalf("Add part %d: %v", i, err)
		}
		if done != (i == len(cmds)-1) {
			t.Fatalf("Add part %d of %d: done = %v", i, len(cmds), done)
		}
		if done {
			return rules
		}
	}
	t.Fatal("no parts")
	return nil
}

func TestSyncCommandsRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		rules     int
		maxBody   int
		wantParts int // 0: more than one, exact number unimportant
	}{
		{name: "empty", rules: 0, maxBody: MaxFrameSize, wantParts: 1},
		{name: "one rule", rules: 1, maxBody: MaxFrameSize, wantParts: 1},
		{name: "one rule per part", rules: 5, maxBody: 500, wantParts: 5},
		{name: "small frames", rules: 1000, maxBody: 4096},
		{name: "100k rules in 16 MiB frames", rules: 100_000, maxBody: MaxFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := testRules(tt.rules)
			cmds, err := SyncCommands(rules, tt.maxBody)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantParts != 0 && len(cmds) != tt.wantParts {
				t.Errorf("%d parts, want %d", len(cmds), tt.wantParts)
			}
			if tt.wantParts == 0 && len(cmds) < 2 {
				t.Errorf("%d parts, want a split", len(cmds))
			}
			hash := HashWorkerRules(rules)
			for i, c := range cmds {
				if c.Type != WSyncRules || c.Part != i || c.Parts != len(cmds) || c.Hash != hash {
					t.Fatalf("part %d: type %s part %d/%d hash %s, want SyncRules %d/%d %s",
						i, c.Type, c.Part, c.Parts, c.Hash, i, len(cmds), hash)
				}
			}
			got := assemble(t, encodeAll(t, cmds, tt.maxBody))
			if len(rules) == 0 {
				rules = []WorkerRule{}
			}
			// reflect.DeepEqual first: cmp is slow on 100,000 rules.
			if !reflect.DeepEqual(rules, got) {
				t.Errorf("reassembled ruleset (-want +got):\n%s", cmp.Diff(rules, got))
			}
		})
	}
}

func TestSyncCommandsFillsFrames(t *testing.T) {
	// With room for about ten rules per frame, parts are full but for the
	// last: the split does not waste frames.
	rules := testRules(100)
	one, _ := json.Marshal(rules[0])
	cmds, err := SyncCommands(rules, 10*(len(one)+1)+200)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) > 11 {
		t.Errorf("%d parts for 100 rules at about 10 per part", len(cmds))
	}
}

func TestSyncCommandsRuleTooLarge(t *testing.T) {
	rules := testRules(2)
	rules[1].Name = strings.Repeat("n", 1000)
	_, err := SyncCommands(rules, 800)
	if err == nil {
		t.Fatal("SyncCommands succeeded with a rule larger than a frame")
	}
	if want := "rule \"" + rules[1].ID + "\" encodes to"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestSyncAssemblerErrors(t *testing.T) {
	rules := testRules(30)
	cmds, err := SyncCommands(rules, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) < 3 {
		t.Fatalf("need at least 3 parts, got %d", len(cmds))
	}
	hash := cmds[0].Hash
	with := func(c WorkerCommand, change func(*WorkerCommand)) *WorkerCommand {
		change(&c)
		return &c
	}
	tests := []struct {
		name    string
		feed    []*WorkerCommand
		wantErr string
	}{
		{name: "not SyncRules", feed: []*WorkerCommand{{Type: WAddRule}},
			wantErr: `assemble SyncRules: command "AddRule" is not SyncRules`},
		{name: "no parts", feed: []*WorkerCommand{with(cmds[0], func(c *WorkerCommand) { c.Parts = 0 })},
			wantErr: "assemble SyncRules: part 0 of 0 is out of range"},
		{name: "part beyond parts", feed: []*WorkerCommand{with(cmds[0], func(c *WorkerCommand) { c.Part = c.Parts })},
			wantErr: fmt.Sprintf("assemble SyncRules: part %d of %d is out of range", len(cmds), len(cmds))},
		{name: "without part 0", feed: []*WorkerCommand{&cmds[1]},
			wantErr: fmt.Sprintf("assemble SyncRules: part 1 of %d arrived without part 0", len(cmds))},
		{name: "skipped part", feed: []*WorkerCommand{&cmds[0], &cmds[2]},
			wantErr: fmt.Sprintf("assemble SyncRules: part 2 of %d arrived, expected part 1", len(cmds))},
		{name: "changed hash", feed: []*WorkerCommand{&cmds[0], with(cmds[1], func(c *WorkerCommand) { c.Hash = "0000000000000000" })},
			wantErr: fmt.Sprintf("assemble SyncRules: part 1 says %d parts of ruleset 0000000000000000, part 0 said %d parts of %s", len(cmds), len(cmds), hash)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a SyncAssembler
			var err error
			for _, c := range tt.feed {
				if _, _, err = a.Add(c); err != nil {
					break
				}
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			// The assembler reset: a complete sync now succeeds.
			for i := range cmds {
				got, done, err := a.Add(&cmds[i])
				if err != nil {
					t.Fatalf("after the error, part %d: %v", i, err)
				}
				if done && len(got) != len(rules) {
					t.Fatalf("after the error: %d rules, want %d", len(got), len(rules))
				}
			}
		})
	}
}

func TestSyncAssemblerPartZeroRestarts(t *testing.T) {
	old, err := SyncCommands(testRules(30), 2000)
	if err != nil {
		t.Fatal(err)
	}
	want := testRules(3)
	fresh, err := SyncCommands(want, 0)
	if err != nil {
		t.Fatal(err)
	}
	var a SyncAssembler
	if _, done, err := a.Add(&old[0]); done || err != nil {
		t.Fatalf("old part 0: done %v err %v", done, err)
	}
	got, done, err := a.Add(&fresh[0])
	if !done || err != nil {
		t.Fatalf("new sync: done %v err %v", done, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ruleset (-want +got):\n%s", diff)
	}
}

func TestHashWorkerRulesIncremental(t *testing.T) {
	// A worker or supervisor keeping a ruleset.SetHash of the
	// WorkerRule.Canonical encodings agrees with HashWorkerRules.
	rules := testRules(10)
	var h ruleset.SetHash
	for i := range rules {
		h.Add(rules[i].Canonical())
	}
	h.Remove(rules[3].Canonical())
	want := HashWorkerRules(slices.Delete(slices.Clone(rules), 3, 4))
	if got := h.String(); got != want {
		t.Errorf("incremental hash %s, HashWorkerRules %s", got, want)
	}
}
