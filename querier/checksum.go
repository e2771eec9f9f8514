package querier

import (
	"encoding/binary"
	"net/netip"
)

// sum adds b to a running ones'-complement sum of 16-bit big-endian words
// (RFC 1071); an odd last byte is padded with zero.
func sum(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold folds a running sum into the 16-bit internet checksum, complemented.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}

// igmpChecksum is the IGMP checksum: the internet checksum of the whole
// message (RFC 3376 §4.1.2). Over a message that carries a correct
// checksum it is 0.
func igmpChecksum(msg []byte) uint16 { return fold(sum(0, msg)) }

// icmp6Checksum is the ICMPv6 checksum of msg from src to dst, over the
// IPv6 pseudo-header (RFC 8200 §8.1, RFC 4443 §2.3). Over a message that
// carries a correct checksum it is 0.
func icmp6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	acc := sum(0, s[:])
	acc = sum(acc, d[:])
	acc += uint32(len(msg)>>16) + uint32(len(msg)&0xffff)
	acc += protoICMPv6
	return fold(sum(acc, msg))
}
