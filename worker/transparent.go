package worker

import (
	"encoding/binary"
	"math/bits"

	"github.com/mcrelay/mcr/worker/packet"
)

// A transparent output (ruleset.Output.PreserveSource) sends each datagram
// with the input datagram's source address and port through a raw IP
// socket, so the worker writes the IP and UDP headers itself, into scratch
// space of its own; the payload is sent from where it was received. It
// forwards like a router: the TTL or hop limit is the input's less one (a
// datagram that arrives with 1 or 0 is dropped and counted, ttl_expired),
// IPv4 keeps the type of service, identification and don't-fragment bit,
// IPv6 the traffic class and flow label; options and extension headers are
// not carried.

// origin is what a transparent output keeps of the datagram it relays,
// read from the input's headers once per packet.
type origin struct {
	v6      bool
	src     [16]byte // IPv4-mapped for IPv4, as packet.Datagram has it
	srcPort uint16
	dst     [16]byte
	dstPort uint16
	hops    uint8  // TTL or hop limit as received
	tos     uint8  // IPv4 type of service
	vtcFlow uint32 // IPv6 version, traffic class and flow label
	id      uint16 // IPv4 identification
	df      bool   // IPv4 don't fragment
	csum    uint16 // UDP checksum as received
	// whole: csum covers the datagram as received, so a header that
	// changes only the destination can be derived from it. A checksum
	// left to offload (NEEDS_CSUM) holds only the pseudo-header sum, and
	// the datagrams of a GSO aggregate are cut from one with that; theirs
	// are computed over the payload.
	whole bool
}

// read fills o from ip, the IP packet dg describes; partial says its UDP
// checksum cannot be reused (a checksum left to offload, an aggregate).
func (o *origin) read(ip []byte, dg *packet.Datagram, partial bool) {
	o.v6 = dg.V6
	o.src, o.srcPort, o.dst, o.dstPort = dg.Src, dg.SrcPort, dg.Dst, dg.DstPort
	if dg.V6 {
		o.vtcFlow = binary.BigEndian.Uint32(ip[0:4])
		o.hops = ip[7]
	} else {
		o.tos = ip[1]
		o.id = binary.BigEndian.Uint16(ip[4:6])
		o.df = ip[6]&0x40 != 0
		o.hops = ip[8]
	}
	o.csum = binary.BigEndian.Uint16(ip[dg.PayloadOff-2 : dg.PayloadOff])
	o.whole = !partial && (o.csum != 0 || !o.v6)
}

// header writes into h the IP and UDP headers of segment seg (0 unless the
// packet was a GSO aggregate) of the datagram, addressed to d, with payload
// p, and returns their length. ttlCap, when not 0, caps the TTL or hop
// limit. It reports false when the datagram's TTL or hop limit runs out.
func (o *origin) header(h *[maxHdr]byte, seg int, d *dest, ttlCap uint8, p []byte) (int, bool) {
	if o.hops <= 1 {
		return 0, false
	}
	hops := o.hops - 1
	if ttlCap != 0 && ttlCap < hops {
		hops = ttlCap
	}
	dst, dport := &d.dstIP, d.key.dst.Port()
	ulen := 8 + len(p)
	var u []byte
	if o.v6 {
		binary.BigEndian.PutUint32(h[0:], o.vtcFlow)
		binary.BigEndian.PutUint16(h[4:], uint16(ulen))
		h[6], h[7] = 17, hops // next header UDP
		copy(h[8:24], o.src[:])
		copy(h[24:40], dst[:])
		u = h[40:48]
	} else {
		h[0], h[1] = 0x45, o.tos
		binary.BigEndian.PutUint16(h[2:], uint16(20+ulen))
		binary.BigEndian.PutUint16(h[4:], o.id+uint16(seg))
		h[6], h[7] = 0, 0
		if o.df {
			h[6] = 0x40
		}
		h[8], h[9] = hops, 17 // protocol UDP
		h[10], h[11] = 0, 0
		copy(h[12:16], o.src[12:])
		copy(h[16:20], dst[12:])
		binary.BigEndian.PutUint16(h[10:], ^fold(sum16(h[0:20], 0)))
		u = h[20:28]
	}
	binary.BigEndian.PutUint16(u[0:], o.srcPort)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	binary.BigEndian.PutUint16(u[6:], o.udpChecksum(dst, dport, u, p))
	if o.v6 {
		return 48, true
	}
	return 28, true
}

// udpChecksum returns the checksum of the relayed datagram: derived from
// the received one when that covers it (RFC 1624: only the destination
// address and port change), or else computed over the pseudo-header, the
// UDP header u (checksum field not yet written) and payload p. An IPv4
// datagram sent without checksum (0) leaves without one.
func (o *origin) udpChecksum(dst *[16]byte, dport uint16, u, p []byte) uint16 {
	if o.whole {
		if o.csum == 0 {
			return 0 // IPv4 without checksum
		}
		from := 12 // the IPv4 address in the mapped form
		if o.v6 {
			from = 0
		}
		// ~HC' = ~HC + ~m + m' for every 16-bit word m that changes.
		s := uint32(^o.csum)
		for i := from; i < 16; i += 2 {
			s += uint32(^binary.BigEndian.Uint16(o.dst[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
		}
		s += uint32(^o.dstPort) + uint32(dport)
		return nonZero(^fold(s))
	}
	from, n := 12, 4
	if o.v6 {
		from, n = 0, 16
	}
	s := sum16(o.src[from:from+n], 0)
	s = sum16(dst[from:from+n], s)
	s += 17 + uint32(len(u)+len(p))
	s = sum16(u[:6], s)
	s = sum16(p, s)
	return nonZero(^fold(s))
}

// nonZero returns c, or 0xffff for 0: a computed UDP checksum of 0 is sent
// as all ones (RFC 768), 0 meaning "no checksum".
func nonZero(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// sum16 adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to the one's-complement sum s and returns the sum folded to 16
// bits. It adds 64-bit words with carry, which folds to the same sum.
func sum16(b []byte, s uint32) uint32 {
	acc, carry := uint64(s), uint64(0)
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), carry)
		b = b[8:]
	}
	acc, carry = bits.Add64(acc, carry, 0)
	acc += carry
	for ; len(b) >= 2; b = b[2:] {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += carry
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += carry
	}
	hi, lo := acc>>32, acc&0xffffffff
	return uint32(fold64(hi + lo))
}

func fold64(s uint64) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// fold folds a one's-complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
