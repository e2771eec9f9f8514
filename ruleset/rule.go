package ruleset

// Rule is one forwarding rule (docs/rules.md): every UDP datagram that
// arrives on Input is republished, payload unchanged, to each of Outputs.
//
// Addresses are kept as the text the operator wrote until Normalize rewrites
// them into canonical form; Validate reports problems with the exact field
// path (`outputs[1].port: must be 1..65535`).
type Rule struct {
	// ID names the rule. Empty means "derive it": DefaultID of the input.
	ID string `json:"id,omitempty"`
	// Name is free text for operators.
	Name    string   `json:"name,omitempty"`
	Input   Input    `json:"input"`
	Outputs []Output `json:"outputs"`
}

// Input selects the datagrams a rule relays.
type Input struct {
	// Interface is the Linux interface name the datagrams arrive on.
	Interface string `json:"interface"`
	// Group is the destination address: IPv4 or IPv6, multicast or unicast.
	Group string `json:"group"`
	// Port is the UDP destination port, 1..65535.
	Port int `json:"port"`
	// Source, when set, restricts the rule to one sender (source-specific).
	Source string `json:"source,omitempty"`
}

// Output is one destination a rule republishes to.
type Output struct {
	// Interface is the interface the datagrams leave on.
	Interface string `json:"interface"`
	// Group is the destination address: multicast or unicast, IPv4 or IPv6;
	// its family need not match the input's.
	Group string `json:"group"`
	// Port is the UDP destination port, 1..65535.
	Port int `json:"port"`
	// TTL is the multicast TTL / hop limit (0 means default: 1 for
	// multicast, the kernel's default for unicast). 0..255.
	TTL int `json:"ttl,omitempty"`
	// Source, when set, fixes the egress source address.
	Source string `json:"source,omitempty"`
	// SourcePort, when set (1..65535), fixes the egress source port: the
	// port receivers and firewalls expect. 0 means one the supervisor picks
	// once per egress identity (interface, family, source address) and
	// keeps while an output uses it. Every worker sends an output's
	// datagrams from the same address and port either way.
	SourcePort int `json:"source_port,omitempty"`
	// PreserveSource makes a transparent output: its datagrams leave with
	// the input datagram's source address and port, and its TTL or hop
	// limit less one, as a router would forward them. It excludes Source
	// and SourcePort, and Group must be of the input's family.
	PreserveSource bool `json:"preserve_source,omitempty"`
	// WhenJoined makes the output follow its receivers: it sends only
	// while the output interface's listener table (IGMP/MLD reports)
	// shows a listener of Group that wants the output's source, and is
	// idle otherwise. Group must be multicast.
	WhenJoined bool `json:"when_joined,omitempty"`
}

// MaxOutputs is the most outputs one rule may have.
const MaxOutputs = 1024
