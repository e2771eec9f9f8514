package querier

import "strconv"

// Family is an address family: IGMP runs on IPv4, MLD on IPv6. The zero
// value is invalid.
type Family uint8

const (
	IPv4 Family = iota + 1
	IPv6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// Protocol is one version of IGMP or MLD. It names the version of a message,
// the version the querier speaks, and a group's compatibility mode (the
// oldest version of host the router has heard for it). MLDv1 is the IPv6
// counterpart of IGMPv2 and MLDv2 of IGMPv3; IPv6 has nothing like IGMPv1.
// The zero value is invalid.
type Protocol uint8

const (
	IGMPv1 Protocol = iota + 1 // RFC 1112: reports only, queries without a response time
	IGMPv2                     // RFC 2236: leaves, group-specific queries
	IGMPv3                     // RFC 3376: source filters
	MLDv1                      // RFC 2710: IGMPv2's counterpart
	MLDv2                      // RFC 3810: IGMPv3's counterpart
)

// String returns the protocol's usual name, such as "IGMPv3".
func (p Protocol) String() string {
	switch p {
	case IGMPv1:
		return "IGMPv1"
	case IGMPv2:
		return "IGMPv2"
	case IGMPv3:
		return "IGMPv3"
	case MLDv1:
		return "MLDv1"
	case MLDv2:
		return "MLDv2"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Family returns the address family the protocol runs on.
func (p Protocol) Family() Family {
	switch p {
	case IGMPv1, IGMPv2, IGMPv3:
		return IPv4
	case MLDv1, MLDv2:
		return IPv6
	}
	return 0
}

// SourceFiltering reports whether the protocol carries source lists
// (IGMPv3, MLDv2).
func (p Protocol) SourceFiltering() bool { return p == IGMPv3 || p == MLDv2 }

// level orders the versions of one family from oldest to newest, so that
// compatibility modes compare: IGMPv1 < IGMPv2 < IGMPv3, MLDv1 < MLDv2, and
// MLDv1 ranks with IGMPv2 (both lack source filters and have leaves).
func (p Protocol) level() int {
	switch p {
	case IGMPv1:
		return 1
	case IGMPv2, MLDv1:
		return 2
	case IGMPv3, MLDv2:
		return 3
	}
	return 0
}
