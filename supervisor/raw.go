package supervisor

import (
	"fmt"
	"net/netip"

	"github.com/mcrelay/mcr/ruleset"
)

// rawSupport says, per family, why the supervisor cannot open the raw
// sockets of transparent outputs (Output.PreserveSource), as probed once at
// start; nil errors: it can.
type rawSupport struct{ v4, v6 error }

// check refuses the first transparent output of rules this supervisor
// cannot serve, naming it; path prefixes the field ("rules[3]"), "" for
// a lone rule.
func (s rawSupport) check(path string, rules ...ruleset.Rule) error {
	for i := range rules {
		for j, o := range rules[i].Outputs {
			if !o.PreserveSource {
				continue
			}
			v6 := netip.MustParseAddr(o.Group).Is6() // validated
			err, family := s.v4, "IPv4"
			if v6 {
				err, family = s.v6, "IPv6"
			}
			if err == nil {
				continue
			}
			field := fmt.Sprintf("outputs[%d].preserve_source", j)
			if path != "" {
				field = fmt.Sprintf("%s[%d].%s", path, i, field)
			}
			return &ruleset.ValidationError{Field: field,
				Message: fmt.Sprintf("this mcrd cannot send transparent %s outputs: %v", family, err)}
		}
	}
	return nil
}
