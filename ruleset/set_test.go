package ruleset

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestValidateSet(t *testing.T) {
	tests := []struct {
		name   string
		change func(rules []Rule) []Rule
		want   string // "" for valid
	}{
		{"valid", func(rules []Rule) []Rule { return rules }, ""},
		{"empty", func([]Rule) []Rule { return nil }, ""},
		{"same group on another interface", func(rules []Rule) []Rule {
			rules[1].Input = rules[0].Input
			rules[1].Input.Interface = "eth9"
			return rules
		}, ""},
		{"same input with and without source", func(rules []Rule) []Rule {
			rules[1].Input = rules[0].Input
			rules[1].Input.Source = "10.0.0.9"
			return rules
		}, ""},
		{"one source port and address in two rules", func(rules []Rule) []Rule {
			rules[1].Outputs[0].SourcePort, rules[3].Outputs[0].SourcePort = 5001, 5001
			return rules
		}, ""},
		{"one source port with and without address in two rules", func(rules []Rule) []Rule {
			rules[1].Outputs[0].SourcePort, rules[3].Outputs[0].SourcePort = 5001, 5001
			rules[3].Outputs[0].Source = "10.1.0.1"
			return rules
		}, `rules[3].outputs[0].source_port: port 5001 on eth1 is taken by rule "r1" (outputs[0]) without a source address; ` +
			`outputs that fix one source port on one interface must name the same source address`},
		{"invalid rule", func(rules []Rule) []Rule {
			rules[3].Outputs[0].Port = 0
			return rules
		}, "rules[3].outputs[0].port: must be 1..65535"},
		{"invalid id", func(rules []Rule) []Rule {
			rules[2].ID = "a b"
			return rules
		}, `rules[2].id: "a b" is not a valid id (1..64 characters of A-Za-z0-9._:-)`},
		{"duplicate id", func(rules []Rule) []Rule {
			rules[4].ID = rules[1].ID
			return rules
		}, `rules[4].id: "r1" already used by rules[1]`},
		{"duplicate input", func(rules []Rule) []Rule {
			rules[4].Input = rules[2].Input
			return rules
		}, `rules[4].input: same input as rule "r2"`},
		{"duplicate input in another spelling", func(rules []Rule) []Rule {
			rules[0].Input.Group = "ff3e::1"
			rules[3].Input.Group = "FF3E:0::1"
			return rules
		}, `rules[3].input: same input as rule "r0"`},
		{"duplicate default id", func(rules []Rule) []Rule {
			// Two rules without id on the same input get the same default
			// id; the id check comes first.
			rules[0].ID, rules[1].ID = "", ""
			rules[1].Input = rules[0].Input
			return rules
		}, `rules[1].id: "` + DefaultID(testRules(1)[0].Input) + `" already used by rules[0]`},
		{"rule without id names its default id", func(rules []Rule) []Rule {
			rules[0].ID = ""
			rules[2].Input = rules[0].Input
			return rules
		}, `rules[2].input: same input as rule "` + DefaultID(testRules(1)[0].Input) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := tt.change(testRules(5))
			before := cloneRules(rules)
			err := ValidateSet(rules)
			if diff := cmp.Diff(before, rules, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ValidateSet modified the rules (-before +after):\n%s", diff)
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ValidateSet() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ValidateSet() = %v, want %q", err, tt.want)
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Errorf("error is %T, want *ValidationError", err)
			}
		})
	}
}

func cloneRules(rules []Rule) []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		r.Outputs = append([]Output(nil), r.Outputs...)
		out[i] = r
	}
	return out
}

// TestSourcePorts follows an index of fixed source ports as rules come and
// go, the way the supervisor keeps it for AddRule.
func TestSourcePorts(t *testing.T) {
	rule := func(id, src string, port int) *Rule {
		return &Rule{ID: id, Input: Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000},
			Outputs: []Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000, Source: src, SourcePort: port}}}
	}
	var s SourcePorts
	a, b := rule("a", "", 5001), rule("b", "", 5001)
	s.Add(a)
	s.Add(b)
	const taken = `outputs[0].source_port: port 5001 on eth1 is taken by rule "a" (outputs[0]) without a source address; ` +
		`outputs that fix one source port on one interface must name the same source address`
	c := rule("c", "10.1.0.1", 5001)
	if err := s.Check(c); err == nil || err.Error() != taken {
		t.Errorf("Check with a and b on the port: %v, want %q", err, taken)
	}
	if err := s.Check(rule("d", "", 5001)); err != nil {
		t.Errorf("Check of a rule sharing the port without address: %v", err)
	}
	if err := s.Check(rule("e", "10.1.0.1", 5002)); err != nil {
		t.Errorf("Check of another port: %v", err)
	}
	s.Remove(a)
	if err := s.Check(c); err == nil || !strings.Contains(err.Error(), `rule "b" (outputs[0])`) {
		t.Errorf("Check after a left: %v, want b named", err)
	}
	s.Remove(b)
	if err := s.Check(c); err != nil {
		t.Errorf("Check once the port is free: %v", err)
	}
	if len(s.byPort) != 0 {
		t.Errorf("index not empty after every rule left: %v", s.byPort)
	}
}
