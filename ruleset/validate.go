package ruleset

import (
	"fmt"
	"net/netip"

	"github.com/mcrelay/mcr/internal/jsontext"
)

// ValidationError says what is wrong with a rule or config and where.
// Field is the path of the offending field in the JSON form of the rule
// ("outputs[1].port") or config ("rules[3].input.group"); it is empty when
// the problem concerns the whole document.
type ValidationError struct {
	Field   string
	Message string
}

// Error returns "Field: Message", or Message alone when Field is empty.
func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// withPrefix returns a copy of e with prefix prepended to its field path.
func (e *ValidationError) withPrefix(prefix string) *ValidationError {
	field := prefix
	if e.Field != "" {
		field += "." + e.Field
	}
	return &ValidationError{Field: field, Message: e.Message}
}

// Validate reports the first thing wrong with the rule as a
// *ValidationError, or nil. It accepts addresses in any spelling but expects
// an id, so call Normalize first to fill in the default one. The checks, in
// order (id, input, outputs one by one, then outputs against each other and
// the input), and their messages; * is "input" or "outputs[i]":
//
//	id              "x y" is not a valid id (1..64 characters of A-Za-z0-9._:-)
//	*.interface     is required
//	                "eth/0" is not a valid interface name
//	*.group         is required
//	                "1.2.3" is not an IP address
//	                "fe80::1%eth0" has a zone; the interface field selects the link
//	                "0.0.0.0" is the unspecified address
//	*.port          must be 1..65535
//	outputs         at least one output is required
//	                1025 outputs, at most 1024
//	outputs[i].ttl  must be 0..255
//	*.source        "x" is not an IP address
//	                "fe80::1%eth0" has a zone; the interface field selects the link
//	                must be a unicast address of the same family as *.group
//	outputs[i].source_port
//	                must be 1..65535
//	outputs[i].preserve_source
//	                excludes source and source_port: the datagrams keep the input's source
//	                needs a group of the input's family: an IPv4 source cannot leave in an IPv6 datagram
//	outputs[i].when_joined
//	                needs a multicast group: only multicast groups have listeners
//	outputs[i]      same as outputs[j]
//	                same as the input (would loop)
//	outputs[i].source_port
//	                port 5001 on eth1 is taken by outputs[j] without a source address; …
//
// A unicast address here is one that is not multicast, unspecified or
// 255.255.255.255. Two outputs are the same, and an output is the same as
// the input, when interface, group and port are equal.
// Interface names follow the kernel's dev_valid_name (net/core/dev.c):
// 1..15 bytes, not "." or "..", and no '/', ':', NUL or byte the kernel's
// isspace accepts (which includes 0xA0, so a name is checked bytewise).
// Outputs that differ only in ttl or source are duplicates: the receivers
// would get every datagram twice. Outputs that fix one source port on one
// interface must agree on the source address (SourcePorts).
func (r *Rule) Validate() error {
	if err := r.validate(); err != nil {
		return err // not a nil *ValidationError in a non-nil error
	}
	return nil
}

func (r *Rule) validate() *ValidationError {
	if !validID(r.ID) {
		return invalid("id", "%s is not a valid id (1..64 characters of A-Za-z0-9._:-)", jsontext.Quote(r.ID))
	}
	if err := r.Input.validate("input"); err != nil {
		return err
	}
	switch n := len(r.Outputs); {
	case n == 0:
		return invalid("outputs", "at least one output is required")
	case n > MaxOutputs:
		return invalid("outputs", "%d outputs, at most %d", n, MaxOutputs)
	}
	inV6 := netip.MustParseAddr(r.Input.Group).Is6() // Input.validate parsed it
	for i := range r.Outputs {
		path := fmt.Sprintf("outputs[%d]", i)
		if err := r.Outputs[i].validate(path); err != nil {
			return err
		}
		if err := r.Outputs[i].validatePreserve(path, inV6); err != nil {
			return err
		}
	}
	if err := r.checkOutputSet(); err != nil {
		return err
	}
	var none SourcePorts // of other rules: SourcePorts.Check, ValidateSet
	return none.check(r, r.ID)
}

// checkOutputSet rejects duplicate outputs and outputs that would feed the
// rule its own datagrams. The outputs are already valid one by one.
func (r *Rule) checkOutputSet() *ValidationError {
	type dest struct {
		iface string
		group netip.Addr
		port  int
	}
	destOf := func(iface, group string, port int) dest {
		return dest{iface, netip.MustParseAddr(group).Unmap(), port}
	}
	in := destOf(r.Input.Interface, r.Input.Group, r.Input.Port)
	seen := make(map[dest]int, len(r.Outputs))
	for i, o := range r.Outputs {
		d := destOf(o.Interface, o.Group, o.Port)
		if d == in {
			return invalid(fmt.Sprintf("outputs[%d]", i), "same as the input (would loop)")
		}
		if j, dup := seen[d]; dup {
			return invalid(fmt.Sprintf("outputs[%d]", i), "same as outputs[%d]", j)
		}
		seen[d] = i
	}
	return nil
}

// validate checks the input's fields; path is its field path ("input").
func (in *Input) validate(path string) *ValidationError {
	if err := validateInterface(path+".interface", in.Interface); err != nil {
		return err
	}
	group, err := parseGroup(path+".group", in.Group)
	if err != nil {
		return err
	}
	if err := validatePort(path+".port", in.Port); err != nil {
		return err
	}
	return validateSource(path+".source", in.Source, path+".group", group)
}

// validate checks the output's fields; path is its field path ("outputs[3]").
func (o *Output) validate(path string) *ValidationError {
	if err := validateInterface(path+".interface", o.Interface); err != nil {
		return err
	}
	group, err := parseGroup(path+".group", o.Group)
	if err != nil {
		return err
	}
	if err := validatePort(path+".port", o.Port); err != nil {
		return err
	}
	if o.TTL < 0 || o.TTL > 255 {
		return invalid(path+".ttl", "must be 0..255")
	}
	if err := validateSource(path+".source", o.Source, path+".group", group); err != nil {
		return err
	}
	if o.SourcePort < 0 || o.SourcePort > 65535 {
		return invalid(path+".source_port", "must be 1..65535")
	}
	if o.WhenJoined && !group.IsMulticast() {
		return invalid(path+".when_joined", "needs a multicast group: only multicast groups have listeners")
	}
	return nil
}

// validatePreserve checks what a transparent output (PreserveSource) must
// not have: a source of its own, or a family other than the input's, whose
// source address its header carries.
func (o *Output) validatePreserve(path string, inV6 bool) *ValidationError {
	switch {
	case !o.PreserveSource:
		return nil
	case o.Source != "" || o.SourcePort != 0:
		return invalid(path+".preserve_source", "excludes source and source_port: the datagrams keep the input's source")
	case netip.MustParseAddr(o.Group).Is6() != inV6:
		in, out := "IPv4", "IPv6"
		if inV6 {
			in, out = out, in
		}
		return invalid(path+".preserve_source", "needs a group of the input's family: an %s source cannot leave in an %s datagram", in, out)
	}
	return nil
}

func validatePort(field string, port int) *ValidationError {
	if port < 1 || port > 65535 {
		return invalid(field, "must be 1..65535")
	}
	return nil
}

func validateInterface(field, name string) *ValidationError {
	if name == "" {
		return invalid(field, "is required")
	}
	if !validInterfaceName(name) {
		return invalid(field, "%s is not a valid interface name", jsontext.Quote(name))
	}
	return nil
}

// validInterfaceName mirrors dev_valid_name in net/core/dev.c. The kernel
// compares bytes with its own isspace (lib/ctype.c: \t \n \v \f \r, space
// and 0xA0); NUL is rejected too since it would end the C string early.
func validInterfaceName(name string) bool {
	const ifNameSize = 16 // IFNAMSIZ, including the terminating NUL
	if len(name) == 0 || len(name) >= ifNameSize || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '/', ':', 0, ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
			return false
		}
	}
	return true
}

// parseGroup parses a destination address (input or output group).
func parseGroup(field, s string) (netip.Addr, *ValidationError) {
	if s == "" {
		return netip.Addr{}, invalid(field, "is required")
	}
	a, err := parseAddr(field, s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.IsUnspecified() {
		return netip.Addr{}, invalid(field, "%s is the unspecified address", jsontext.Quote(s))
	}
	return a, nil
}

// validateSource checks an optional source address against its group,
// which groupField names in the message.
func validateSource(field, s, groupField string, group netip.Addr) *ValidationError {
	if s == "" {
		return nil
	}
	a, err := parseAddr(field, s)
	if err != nil {
		return err
	}
	if !isUnicast(a) || a.Is4() != group.Is4() {
		return invalid(field, "must be a unicast address of the same family as %s", groupField)
	}
	return nil
}

// parseAddr parses an address without zone, unmapping IPv4-mapped IPv6.
func parseAddr(field, s string) (netip.Addr, *ValidationError) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, invalid(field, "%s is not an IP address", jsontext.Quote(s))
	}
	if a.Zone() != "" {
		return netip.Addr{}, invalid(field, "%s has a zone; the interface field selects the link", jsontext.Quote(s))
	}
	return a.Unmap(), nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func isUnicast(a netip.Addr) bool {
	return !a.IsMulticast() && !a.IsUnspecified() && a != limitedBroadcast
}

// validID reports whether id is 1..64 characters of [A-Za-z0-9._:-]: safe
// in file names, URLs, metric labels and shell arguments without quoting.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
