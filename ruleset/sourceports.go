package ruleset

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// SourcePorts indexes the outputs that fix their source port
// (Output.SourcePort), to find outputs that ask for one port on one
// interface in ways no socket can serve.
//
// The relay sends from one UDP socket per interface, family, source address
// and source port, bound to the interface before the port. A socket bound to
// the port on any address holds it for every address, so an output without
// a source address cannot share its port with one that names an address.
// Outputs naming the same address share a socket, outputs naming different
// addresses get one each; the families never conflict (IPv6 sockets are
// IPV6_V6ONLY), nor do different interfaces.
//
// The zero value is an empty index. It is not safe for concurrent use.
type SourcePorts struct {
	byPort map[portKey]map[string]map[portUser]bool // port → source ("": any) → outputs
}

// portKey is one source port on one interface for one family.
type portKey struct {
	iface string
	v6    bool
	port  int
}

// portUser is one output that fixes a source port: output i of rule id.
type portUser struct {
	rule   string
	output int
}

func portKeyOf(o *Output) portKey {
	// Validate accepted the group.
	return portKey{o.Interface, netip.MustParseAddr(o.Group).Is6(), o.SourcePort}
}

// Check reports the first output of r (normalised and valid one by one)
// whose source port conflicts with an output of the index or an earlier one
// of r, as a *ValidationError naming both:
//
//	outputs[1].source_port: port 5001 on eth1 is taken by rule "b" (outputs[0])
//	without a source address; outputs that fix one source port on one
//	interface must name the same source address
func (s *SourcePorts) Check(r *Rule) error {
	if err := s.check(r, ""); err != nil {
		return err
	}
	return nil
}

func (s *SourcePorts) check(r *Rule, self string) *ValidationError {
	var own SourcePorts
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if o.SourcePort == 0 {
			continue
		}
		k := portKeyOf(o)
		for _, idx := range []*SourcePorts{s, &own} {
			u, src, ok := idx.conflict(k, o.Source)
			if !ok {
				continue
			}
			who := fmt.Sprintf("rule %q (outputs[%d])", u.rule, u.output)
			if u.rule == self || idx == &own {
				who = fmt.Sprintf("outputs[%d]", u.output)
			}
			from := "without a source address"
			if src != "" {
				from = "from " + src
			}
			return invalid(fmt.Sprintf("outputs[%d].source_port", i),
				"port %d on %s is taken by %s %s; outputs that fix one source port on one interface must name the same source address",
				k.port, k.iface, who, from)
		}
		own.add(k, o.Source, portUser{r.ID, i})
	}
	return nil
}

// conflict returns an output on port k whose source cannot share a socket
// with source src, and its source.
func (s *SourcePorts) conflict(k portKey, src string) (portUser, string, bool) {
	for _, other := range slices.Sorted(maps.Keys(s.byPort[k])) {
		if (other == "") == (src == "") {
			continue
		}
		users := slices.SortedFunc(maps.Keys(s.byPort[k][other]), func(a, b portUser) int {
			return cmp.Or(cmp.Compare(a.rule, b.rule), cmp.Compare(a.output, b.output))
		})
		return users[0], other, true
	}
	return portUser{}, "", false
}

// Add enters the outputs of r, normalised and valid, that fix a source port.
func (s *SourcePorts) Add(r *Rule) {
	for i := range r.Outputs {
		if o := &r.Outputs[i]; o.SourcePort != 0 {
			s.add(portKeyOf(o), o.Source, portUser{r.ID, i})
		}
	}
}

func (s *SourcePorts) add(k portKey, src string, u portUser) {
	if s.byPort == nil {
		s.byPort = map[portKey]map[string]map[portUser]bool{}
	}
	srcs := s.byPort[k]
	if srcs == nil {
		srcs = map[string]map[portUser]bool{}
		s.byPort[k] = srcs
	}
	if srcs[src] == nil {
		srcs[src] = map[portUser]bool{}
	}
	srcs[src][u] = true
}

// Remove takes out what Add(r) entered.
func (s *SourcePorts) Remove(r *Rule) {
	for i := range r.Outputs {
		o := &r.Outputs[i]
		if o.SourcePort == 0 {
			continue
		}
		k := portKeyOf(o)
		srcs := s.byPort[k]
		delete(srcs[o.Source], portUser{r.ID, i})
		if len(srcs[o.Source]) == 0 {
			delete(srcs, o.Source)
		}
		if len(srcs) == 0 {
			delete(s.byPort, k)
		}
	}
}
