package querier

import (
	"net/netip"

	"github.com/mcrelay/mcr/internal/inetsum"
)

// igmpChecksum is the IGMP checksum: the internet checksum of the whole
// message (RFC 3376 §4.1.2). Over a message that carries a correct
// checksum it is 0.
func igmpChecksum(msg []byte) uint16 { return inetsum.Checksum(inetsum.Add(0, msg)) }

// icmp6Checksum is the ICMPv6 checksum of msg from src to dst, over the
// IPv6 pseudo-header (RFC 8200 §8.1, RFC 4443 §2.3). Over a message that
// carries a correct checksum it is 0.
func icmp6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	acc := inetsum.Add(0, s[:])
	acc = inetsum.Add(acc, d[:])
	acc += uint32(len(msg)>>16) + uint32(len(msg)&0xffff)
	acc += protoICMPv6
	return inetsum.Checksum(inetsum.Add(acc, msg))
}
