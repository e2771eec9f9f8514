package packet

import (
	"encoding/binary"
	"strconv"
)

// Reason says whether Parse accepted a packet and, if not, which drop counter
// it belongs to (stats.WorkerCounters: malformed, fragments, not_udp,
// vlan_tagged).
//
// The zero value is OK: a Reason is always produced by Parse, never left
// unset, so OK plays the part of a nil error.
type Reason uint8

const (
	// OK: a complete, unfragmented UDP datagram; the Datagram is filled in.
	OK Reason = iota
	// Malformed: truncated or inconsistent headers — bad version, IHL or
	// header checksum, an IP or UDP length that exceeds the bytes present
	// or contradicts another, an IPv6 jumbogram, or an extension-header
	// chain that runs past the packet, is out of order or is longer than
	// MaxExtHeaders.
	Malformed
	// Fragment: an IPv4 fragment (MF set or offset ≠ 0) or an IPv6 packet
	// with a Fragment header that is not an atomic fragment (RFC 6946).
	// Whole reassembled packets from PACKET_FANOUT_FLAG_DEFRAG are not
	// fragments.
	Fragment
	// NotUDP: a well-formed IP packet whose payload is not UDP. This
	// includes IPsec (ESP, AH): the relay cannot verify or decrypt it, and
	// relaying an AH-protected payload would silently strip its integrity
	// protection. It also covers an AF_PACKET frame whose link-layer
	// protocol is not IP at all (ParseEtherType).
	NotUDP
	// VLANTagged: a frame whose EtherType is a VLAN tag (ParseEtherType):
	// traffic of a VLAN, which belongs to that VLAN's interface, not to
	// the one that received it.
	VLANTagged
)

// String returns the reason as the word used in logs.
func (r Reason) String() string {
	switch r {
	case OK:
		return "ok"
	case Malformed:
		return "malformed"
	case Fragment:
		return "fragment"
	case NotUDP:
		return "not UDP"
	case VLANTagged:
		return "VLAN-tagged"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Datagram locates one UDP datagram inside the buffer given to Parse. It
// holds no reference to the buffer: the caller keeps ownership of both.
type Datagram struct {
	// Dst and Src are the IP addresses; IPv4 addresses are stored
	// IPv4-mapped (::ffff:a.b.c.d), the form ruleset.Key uses.
	Dst, Src [16]byte
	// SrcPort and DstPort are the UDP ports.
	SrcPort, DstPort uint16
	// PayloadOff and PayloadLen delimit the UDP payload:
	// buf[PayloadOff : PayloadOff+PayloadLen]. PayloadLen may be 0.
	PayloadOff, PayloadLen int
	// V6 reports whether the packet is IPv6.
	V6 bool
}

// EtherType values of sockaddr_ll.sll_protocol, in host byte order, that
// ParseEtherType accepts.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86DD
)

// EtherType values that announce a VLAN tag, which ParseEtherType reports
// as VLANTagged: IEEE 802.1Q (customer tag), IEEE 802.1ad (service tag,
// the outer tag of QinQ), and 0x9100, the service tag of switches that
// predate 802.1ad.
const (
	EtherTypeVLAN    = 0x8100
	EtherTypeQinQ    = 0x88A8
	EtherTypeQinQOld = 0x9100
)

// MaxExtHeaders is the longest IPv6 extension-header chain Parse walks before
// the UDP header; a longer chain is Malformed. Real traffic carries at most
// two or three; the cap bounds the per-packet work an attacker can cause.
const MaxExtHeaders = 8

const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	udpHeader     = 8

	protoHopByHop = 0
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60
)

// Parse validates buf, a packet starting at its IPv4 or IPv6 header, and
// fills d when it carries a UDP datagram. The IP version comes from the
// packet's version nibble. Bytes after the IP total length (IPv4) or payload
// length (IPv6) are ignored: Ethernet pads short frames to 60 bytes.
//
// Parse returns OK only when the whole datagram lies within buf. On any other
// Reason the contents of d are unspecified. Parse never panics and never
// allocates; d's previous contents do not matter.
func Parse(buf []byte, d *Datagram) Reason {
	if len(buf) == 0 {
		return Malformed
	}
	switch buf[0] >> 4 {
	case 4:
		return parse4(buf, d)
	case 6:
		return parse6(buf, d)
	}
	return Malformed
}

// ParseEtherType is Parse for a packet whose link-layer protocol the caller
// knows (the EtherType that ends its Ethernet header, the protocol its
// AF_PACKET socket is bound to, or sll_protocol converted to host order). A
// version nibble that contradicts the protocol is Malformed, because the
// kernel's ip_rcv and ipv6_rcv would drop such a packet; a VLAN tag is
// VLANTagged; any other protocol is NotUDP.
func ParseEtherType(etherType uint16, buf []byte, d *Datagram) Reason {
	var version byte
	switch etherType {
	case EtherTypeIPv4:
		version = 4
	case EtherTypeIPv6:
		version = 6
	case EtherTypeVLAN, EtherTypeQinQ, EtherTypeQinQOld:
		return VLANTagged
	default:
		return NotUDP
	}
	if len(buf) == 0 || buf[0]>>4 != version {
		return Malformed
	}
	return Parse(buf, d)
}

// parse4 parses an IPv4 packet; buf[0]>>4 is 4.
func parse4(buf []byte, d *Datagram) Reason {
	if len(buf) < ipv4MinHeader {
		return Malformed
	}
	ihl := int(buf[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(buf[2:4]))
	if ihl < ipv4MinHeader || total < ihl || total > len(buf) {
		return Malformed
	}
	if !headerChecksumOK(buf[:ihl]) {
		return Malformed
	}
	// Flags and fragment offset: MF is 0x2000, the offset the low 13 bits.
	// DF and the reserved bit do not matter here.
	if binary.BigEndian.Uint16(buf[6:8])&0x3fff != 0 {
		return Fragment
	}
	if buf[9] != protoUDP {
		return NotUDP
	}
	d.V6 = false
	setMapped(&d.Src, buf[12:16])
	setMapped(&d.Dst, buf[16:20])
	return parseUDP(buf[:total], ihl, d)
}

// headerChecksumOK reports whether the ones' complement sum of an IPv4
// header, checksum field included, is all ones (RFC 1071). len(h) is a
// multiple of 4; summing 32-bit words and folding gives the same result as
// summing 16-bit words, in half the steps.
func headerChecksumOK(h []byte) bool {
	var sum uint64
	for ; len(h) >= 4; h = h[4:] {
		sum += uint64(binary.BigEndian.Uint32(h))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum == 0xffff
}

// v4Mapped is the prefix of an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2).
var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

func setMapped(dst *[16]byte, v4 []byte) {
	copy(dst[:12], v4Mapped[:])
	copy(dst[12:], v4)
}

// parse6 parses an IPv6 packet; buf[0]>>4 is 6.
func parse6(buf []byte, d *Datagram) Reason {
	if len(buf) < ipv6Header {
		return Malformed
	}
	// A payload length of 0 announces a jumbogram (RFC 2675), which needs
	// a 64 KiB MTU no input link has; treat it as malformed.
	plen := int(binary.BigEndian.Uint16(buf[4:6]))
	if plen == 0 || plen > len(buf)-ipv6Header {
		return Malformed
	}
	pkt := buf[:ipv6Header+plen]
	off, r := skipExtHeaders(pkt, pkt[6])
	if r != OK {
		return r
	}
	d.V6 = true
	copy(d.Src[:], pkt[8:24])
	copy(d.Dst[:], pkt[24:40])
	return parseUDP(pkt, off, d)
}

// skipExtHeaders walks the extension headers of pkt, whose fixed header
// names next as its first next header, and returns the offset of the UDP
// header.
func skipExtHeaders(pkt []byte, next byte) (int, Reason) {
	off := ipv6Header
	for n := 0; ; n++ {
		switch next {
		case protoUDP:
			return off, OK
		case protoHopByHop, protoRouting, protoDestOpts, protoFragment:
		default:
			// ESP, AH, No Next Header (59), ICMPv6, TCP, … (see NotUDP).
			return 0, NotUDP
		}
		if n == MaxExtHeaders || len(pkt)-off < 8 {
			return 0, Malformed
		}
		size := (int(pkt[off+1]) + 1) * 8
		switch next {
		case protoHopByHop:
			// RFC 8200 4.1: Hop-by-Hop Options only directly after the
			// fixed header; ipv6_rcv discards it anywhere else.
			if off != ipv6Header {
				return 0, Malformed
			}
		case protoFragment:
			// Offset and M flag are the 16 bits at 2..3. Both zero is
			// an atomic fragment, a whole datagram (RFC 6946 4).
			if binary.BigEndian.Uint16(pkt[off+2:off+4])&0xfff9 != 0 {
				return 0, Fragment
			}
			size = 8 // its second byte is reserved, not a length
		}
		if size > len(pkt)-off {
			return 0, Malformed
		}
		next = pkt[off]
		off += size
	}
}

// parseUDP checks the UDP header at off in pkt, which ends where the IP
// packet ends, and fills d's ports and payload. A UDP length shorter than the
// IP payload is accepted, as the kernel's UDP receive path does: the extra
// bytes are not part of the datagram.
func parseUDP(pkt []byte, off int, d *Datagram) Reason {
	if len(pkt)-off < udpHeader {
		return Malformed
	}
	u := pkt[off : off+udpHeader]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < udpHeader || ulen > len(pkt)-off {
		return Malformed
	}
	d.SrcPort = binary.BigEndian.Uint16(u[0:2])
	d.DstPort = binary.BigEndian.Uint16(u[2:4])
	d.PayloadOff = off + udpHeader
	d.PayloadLen = ulen - udpHeader
	return OK
}
