package supervisor

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mcrelay/mcr/ruleset"
)

// TestMaxConfigSizeHolds100kRules measures the config of the longest
// reasonable rule as SaveConfig writes it, over 1,000 rules, and checks
// that 100,000 of them fit maxConfigSize with room to spare.
func TestMaxConfigSizeHolds100kRules(t *testing.T) {
	const rules, budget = 1000, 100_000
	c := ruleset.Config{Rules: make([]ruleset.Rule, rules)}
	for i := range c.Rules {
		r := ruleset.Rule{
			ID:   fmt.Sprintf("%s%06d", strings.Repeat("r", 58), i), // 64 characters, the most an id may have
			Name: strings.Repeat("n", 128),
			Input: ruleset.Input{Interface: "eth0.100-abcde", Port: 65535,
				Group:  fmt.Sprintf("ff3e:1234:5678:9abc:def0:1234:%04x:%04x", i>>16, i&0xffff),
				Source: "2001:db8:85a3:1234:5678:8a2e:370:7334"},
		}
		for j := range 4 {
			r.Outputs = append(r.Outputs, ruleset.Output{Interface: "eth1.200-abcde", Port: 65535, TTL: 255,
				Group:  fmt.Sprintf("ff3e:1234:5678:9abc:def0:%04x:%04x:%04x", j, i>>16, i&0xffff),
				Source: "2001:db8:85a3:1234:5678:8a2e:370:7335"})
		}
		r.Normalize()
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		c.Rules[i] = r
	}
	data, err := ruleset.EncodeConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	perRule := len(data) / rules
	need := perRule * budget
	t.Logf("%d bytes per rule: %d MB for %d rules; limit %d MB", perRule, need/1_000_000, budget, maxConfigSize/1_000_000)
	if need > maxConfigSize*3/4 {
		t.Errorf("%d rules of %d bytes need %d bytes: maxConfigSize (%d) leaves less than a quarter spare",
			budget, perRule, need, maxConfigSize)
	}
}
