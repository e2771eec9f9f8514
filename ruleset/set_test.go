package ruleset

import (
	"errors"
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
