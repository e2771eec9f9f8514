package packettest

import (
	"encoding/binary"
	"net/netip"

	"github.com/mcrelay/mcr/internal/inetsum"
	"github.com/mcrelay/mcr/internal/pcap"
)

const (
	protoHopByHop = 0
	protoFragment = 44
	ipv6Header    = 40
)

// BuildUDP4 returns an IPv4 packet (20-byte header, TTL 64, no flags)
// carrying one UDP datagram from src to dst with payload. Both addresses must
// be IPv4 or IPv4-mapped.
func BuildUDP4(src, dst netip.AddrPort, payload []byte) []byte {
	if !src.Addr().Unmap().Is4() || !dst.Addr().Unmap().Is4() {
		panic("packettest.BuildUDP4: addresses must be IPv4: " + src.String() + " " + dst.String())
	}
	p, _ := pcap.AppendUDP(nil, src, dst, payload, len(payload))
	p[6] = 0 // AppendUDP sets DF; test packets have no flags
	SetIPv4Checksum(p)
	return p
}

// BuildUDP6 returns an IPv6 packet (hop limit 64, no extension headers)
// carrying one UDP datagram from src to dst with payload. Both addresses must
// be IPv6 and not IPv4-mapped.
func BuildUDP6(src, dst netip.AddrPort, payload []byte) []byte {
	s, d := src.Addr(), dst.Addr()
	if !s.Is6() || !d.Is6() || s.Is4In6() || d.Is4In6() {
		panic("packettest.BuildUDP6: addresses must be IPv6: " + src.String() + " " + dst.String())
	}
	p, _ := pcap.AppendUDP(nil, src, dst, payload, len(payload))
	return p
}

// SetIPv4Checksum recomputes the header checksum of the IPv4 packet p, for
// tests that edit a header field and want only that edit to matter. An IHL
// beyond the end of p sums the bytes present.
func SetIPv4Checksum(p []byte) {
	ihl := min(int(p[0]&0x0f)*4, len(p))
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], inetsum.Checksum(inetsum.Add(0, p[:ihl])))
}

// WithIPv4Options returns a copy of the IPv4 packet p with opts (a multiple
// of 4 bytes, at most 40) inserted as header options, IHL, total length and
// header checksum updated.
func WithIPv4Options(p, opts []byte) []byte {
	if len(opts)%4 != 0 || len(opts) > 40 {
		panic("packettest.WithIPv4Options: options must be a multiple of 4 bytes, at most 40")
	}
	ihl := int(p[0]&0x0f) * 4
	q := make([]byte, 0, len(p)+len(opts))
	q = append(append(append(q, p[:ihl]...), opts...), p[ihl:]...)
	q[0] = 0x40 | byte((ihl+len(opts))/4)
	binary.BigEndian.PutUint16(q[2:4], binary.BigEndian.Uint16(p[2:4])+uint16(len(opts)))
	SetIPv4Checksum(q)
	return q
}

// WithHopByHop6 returns a copy of the IPv6 packet p with an 8-byte
// Hop-by-Hop Options header (one PadN option) inserted after the fixed
// header, the shape routers and MLD add. The UDP checksum stays valid: the
// pseudo-header does not cover extension headers.
func WithHopByHop6(p []byte) []byte {
	hbh := []byte{p[6], 0, 1, 4, 0, 0, 0, 0} // next header, length 0 (8 bytes), PadN of 4
	q := make([]byte, 0, len(p)+len(hbh))
	q = append(append(append(q, p[:ipv6Header]...), hbh...), p[ipv6Header:]...)
	q[6] = protoHopByHop
	binary.BigEndian.PutUint16(q[4:6], binary.BigEndian.Uint16(p[4:6])+uint16(len(hbh)))
	return q
}

// Fragment splits an IP packet into fragments carrying at most size bytes of
// its IP payload each (size is rounded down to a multiple of 8, at least 8),
// as a sender would: IPv4 with the MF flag and fragment offsets, IPv6 with a
// Fragment header (identification 0x6d6372). An IPv6 packet must not carry
// extension headers.
func Fragment(p []byte, size int) [][]byte {
	size &^= 7
	if size < 8 {
		panic("packettest.Fragment: size must be at least 8")
	}
	if p[0]>>4 == 6 {
		return fragment6(p, size)
	}
	return fragment4(p, size)
}

func fragment4(p []byte, size int) [][]byte {
	ihl := int(p[0]&0x0f) * 4
	payload := p[ihl:binary.BigEndian.Uint16(p[2:4])]
	var frags [][]byte
	for off := 0; off < len(payload); off += size {
		chunk := payload[off:min(off+size, len(payload))]
		f := append(append([]byte(nil), p[:ihl]...), chunk...)
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		flags := uint16(off / 8)
		if off+len(chunk) < len(payload) {
			flags |= 0x2000 // more fragments
		}
		binary.BigEndian.PutUint16(f[6:8], flags)
		SetIPv4Checksum(f)
		frags = append(frags, f)
	}
	return frags
}

func fragment6(p []byte, size int) [][]byte {
	payload := p[ipv6Header : ipv6Header+int(binary.BigEndian.Uint16(p[4:6]))]
	var frags [][]byte
	for off := 0; off < len(payload); off += size {
		chunk := payload[off:min(off+size, len(payload))]
		fh := []byte{p[6], 0, 0, 0, 0, 0x6d, 0x63, 0x72}
		offM := uint16(off)
		if off+len(chunk) < len(payload) {
			offM |= 1 // M: more fragments
		}
		binary.BigEndian.PutUint16(fh[2:4], offM)
		f := append(append(append([]byte(nil), p[:ipv6Header]...), fh...), chunk...)
		f[6] = protoFragment
		binary.BigEndian.PutUint16(f[4:6], uint16(len(fh)+len(chunk)))
		frags = append(frags, f)
	}
	return frags
}

// EthernetFrame returns an Ethernet frame that carries the IPv4 or IPv6
// packet p to the multicast MAC address of its destination, from a locally
// administered source address. tags, pairs of tag protocol identifier and
// tag control information (0x8100, 100 for 802.1Q VLAN 100), go between
// the addresses and the EtherType, which is etherType, or p's version's
// when 0.
func EthernetFrame(p []byte, etherType uint16, tags ...uint16) []byte {
	mac := multicastMAC(p)
	f := append(mac[:], 0x02, 0, 0, 0, 0, 1)
	for _, v := range tags {
		f = binary.BigEndian.AppendUint16(f, v)
	}
	if etherType == 0 {
		etherType = etherTypeOf(p)
	}
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, p...)
}

// etherTypeOf returns the EtherType of IP packet p's version.
func etherTypeOf(p []byte) uint16 {
	if p[0]>>4 == 6 {
		return 0x86dd
	}
	return 0x0800
}

// multicastMAC returns the Ethernet address of the multicast destination
// of IP packet p (RFC 1112 6.4, RFC 2464 7).
func multicastMAC(p []byte) [6]byte {
	if p[0]>>4 == 6 {
		return [6]byte{0x33, 0x33, p[36], p[37], p[38], p[39]}
	}
	return [6]byte{0x01, 0x00, 0x5e, p[17] & 0x7f, p[18], p[19]}
}
