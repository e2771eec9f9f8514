package querier

import "errors"

// Reasons a received packet is not taken. The parsers return these values
// themselves, never wrapped, so that they cost no allocation and a caller
// can count them by identity (the Linux receiver keeps a counter per
// reason). ErrNotMembership is not an error of the sender: IGMP and ICMPv6
// carry other messages too.
var (
	// ErrNotMembership: a well-formed packet that is no IGMP or MLD
	// message this package handles (another ICMPv6 or IGMP type, such as
	// DVMRP or mtrace, or another IP protocol).
	ErrNotMembership = errors.New("not an IGMP or MLD membership message")
	// ErrTruncated: shorter than its headers, lengths or counts say.
	ErrTruncated = errors.New("truncated")
	// ErrChecksum: the IPv4 header, IGMP or ICMPv6 checksum is wrong.
	ErrChecksum = errors.New("bad checksum")
	// ErrQueryLength: a query whose length fits no version (IGMP: 9 to
	// 11 bytes; MLD: 25 to 27), which RFC 3376 §7.1 and RFC 3810 §8.1
	// say to ignore.
	ErrQueryLength = errors.New("query length fits no version")
	// ErrGroup: a group that is not a multicast address, a general query
	// with sources, or a report for the all-hosts or all-nodes group.
	ErrGroup = errors.New("bad group address")
	// ErrFragment: an IPv4 fragment or an IPv6 packet with a fragment
	// header. Membership messages are never fragmented.
	ErrFragment = errors.New("fragment")
	// ErrHopLimit: TTL or hop limit other than 1. Every membership message
	// is sent with 1 (RFC 3376 §4, RFC 3810 §5); anything else came from
	// beyond the link.
	ErrHopLimit = errors.New("hop limit is not 1")
	// ErrRouterAlert: an MLD message without the Router Alert option,
	// which RFC 3810 §5.1.14 and §5.2.13 say to drop.
	ErrRouterAlert = errors.New("no router alert option")
	// ErrSource: an MLD query whose source is not link-local, or an MLD
	// report whose source is neither link-local nor unspecified (RFC 3810
	// §5.1.14, §5.2.13; RFC 3590 allows :: for reports during DAD).
	ErrSource = errors.New("source address not allowed")
)
