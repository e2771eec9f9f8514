package ruleset

import (
	"net/netip"
	"strconv"
	"strings"
)

// Normalize rewrites the rule's addresses into canonical text and fills in
// the default id, so that two spellings of one rule compare, hash and
// deduplicate as the same rule.
//
// Addresses become what net/netip prints: lowercase, zero-compressed IPv6
// ("FF3E:0::1" → "ff3e::1"). IPv4-mapped IPv6 addresses are unmapped to IPv4
// ("::ffff:1.2.3.4" → "1.2.3.4"): the datagrams they name are IPv4 on the
// wire, and the lookup table stores IPv4 as mapped IPv6 anyway, so keeping
// both spellings would only let one input appear under two names.
//
// Text that does not parse is left exactly as written, for Validate to
// report; nothing else (interface names, the name, whitespace) is touched.
// An empty ID becomes DefaultID(r.Input), computed after normalisation.
func (r *Rule) Normalize() {
	r.Input.normalize()
	for i := range r.Outputs {
		r.Outputs[i].normalize()
	}
	if r.ID == "" {
		r.ID = DefaultID(r.Input)
	}
}

func (in *Input) normalize() {
	in.Group = canonicalAddr(in.Group)
	in.Source = canonicalAddr(in.Source)
}

func (o *Output) normalize() {
	o.Group = canonicalAddr(o.Group)
	o.Source = canonicalAddr(o.Source)
}

// canonicalAddr returns the canonical text of an address, or s unchanged
// when s is not an address.
func canonicalAddr(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// Destination names an output as "group:port@interface" — "239.2.2.2:6000@eth1",
// "[ff3e::1]:6000@eth1" — the label its counters carry in GetStats and in
// metrics. The address is printed canonically whether or not the output was
// normalised.
func (o Output) Destination() string {
	host := canonicalAddr(o.Group)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(o.Port) + "@" + o.Interface
}

// InputKey identifies "the same input" for duplicate detection: two rules
// whose inputs have equal keys would claim the same datagrams. It is
// comparable, so it can key a map.
type InputKey struct {
	Interface string
	Group     string // canonical text, as Normalize writes it
	Port      int
	Source    string // canonical text; "" for any source
}

// Key returns the input's identity; addresses are compared in canonical
// form, so "FF3E::1" and "ff3e::1" are the same input.
func (in Input) Key() InputKey {
	return InputKey{
		Interface: in.Interface,
		Group:     canonicalAddr(in.Group),
		Port:      in.Port,
		Source:    canonicalAddr(in.Source),
	}
}
