// Package inetsum computes the internet checksum (RFC 1071) that IPv4, UDP,
// IGMP and ICMPv6 headers carry, for the packets mcr builds outside the
// worker's hot path: IGMP/MLD messages and the headers of captured
// datagrams. The worker verifies and derives checksums with its own,
// unrolled code (worker/packet).
package inetsum

import "encoding/binary"

// Add adds b to the running ones'-complement sum acc of 16-bit big-endian
// words, unfolded; an odd last byte is padded with zero. Sums of several
// pieces (a pseudo-header, then the message) chain through acc.
func Add(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// Checksum folds the running sum acc into 16 bits and complements it: the
// value a header's checksum field carries, and 0 when acc covered a
// message whose checksum is right.
func Checksum(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}
