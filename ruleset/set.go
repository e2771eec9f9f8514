package ruleset

import (
	"fmt"
	"slices"
)

// ValidateSet checks a whole ruleset: each rule as Validate does, then that
// ids and inputs are unique. It works on normalised copies, so rules are not
// modified and rules without an id are checked under their default id. The
// error is a *ValidationError whose field starts with the rule's index:
//
//	rules[3].outputs[0].port: must be 1..65535
//	rules[4].id: "x" already used by rules[1]
//	rules[4].input: same input as rule "abc"
//	rules[5].outputs[0].source_port: port 5001 on eth1 is taken by rule "b" (outputs[1]) …
func ValidateSet(rules []Rule) error {
	ids := make(map[string]int, len(rules))
	inputs := make(map[InputKey]string, len(rules))
	var ports SourcePorts
	for i, r := range rules {
		r.Outputs = slices.Clone(r.Outputs)
		r.Normalize()
		path := fmt.Sprintf("rules[%d]", i)
		if err := r.validate(); err != nil {
			return err.withPrefix(path)
		}
		if j, dup := ids[r.ID]; dup {
			return invalid(path+".id", "%q already used by rules[%d]", r.ID, j)
		}
		ids[r.ID] = i
		key := r.Input.Key()
		if other, dup := inputs[key]; dup {
			return invalid(path+".input", "same input as rule %q", other)
		}
		inputs[key] = r.ID
		if err := ports.check(&r, r.ID); err != nil {
			return err.withPrefix(path)
		}
		ports.Add(&r)
	}
	return nil
}
