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
}

// MaxOutputs is the most outputs one rule may have.
const MaxOutputs = 1024
