package querier

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers and option types the parser knows.
const (
	protoHopByHop = 0
	protoIGMP     = 2
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDestOpts = 60

	ipv4RouterAlert = 0x94 // RFC 2113: copied flag + option 20, length 4
	ipv6RouterAlert = 0x05 // RFC 2711 hop-by-hop option type

	ipv4Header = 20
	ipv6Header = 40
)

// maxExtHeaders bounds the IPv6 extension headers walked before ICMPv6:
// MLD carries exactly one (hop-by-hop), so a longer chain is only work an
// attacker makes us do.
const maxExtHeaders = 4

// Packet is a received IGMP or MLD packet: the IP header fields the checks
// and the state machine need, and the message. IPv4 addresses are 4-byte
// netip.Addrs.
type Packet struct {
	Src, Dst netip.Addr
	// HopLimit is the IPv4 TTL or the IPv6 hop limit.
	HopLimit uint8
	// RouterAlert reports an IPv4 Router Alert option (RFC 2113) or an
	// IPv6 hop-by-hop Router Alert option (RFC 2711).
	RouterAlert bool
	Message
}

// ParsePacket decodes b, an IPv4 or IPv6 packet starting at its IP header
// (what an AF_PACKET SOCK_DGRAM socket delivers, packet(7)), into p, and
// checks it as a router must before it acts on it: TTL or hop limit 1;
// for MLD also the Router Alert option and a link-local source (or ::
// for reports). Bytes after the IP total or payload length are ignored
// (Ethernet pads short frames). It returns one of the Err values of this
// package, unwrapped, or nil; it never panics, and it allocates only when
// p's slices need to grow.
func ParsePacket(b []byte, p *Packet) error {
	p.Src, p.Dst, p.HopLimit, p.RouterAlert = netip.Addr{}, netip.Addr{}, 0, false
	if len(b) == 0 {
		return ErrTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return parse4(b, p)
	case 6:
		return parse6(b, p)
	}
	return ErrNotMembership
}

func parse4(b []byte, p *Packet) error {
	if len(b) < ipv4Header {
		return ErrTruncated
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < ipv4Header || total < ihl || total > len(b) {
		return ErrTruncated
	}
	if igmpChecksum(b[:ihl]) != 0 {
		return ErrChecksum
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return ErrFragment
	}
	if b[9] != protoIGMP {
		return ErrNotMembership
	}
	p.HopLimit = b[8]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	var err error
	if p.RouterAlert, err = ipv4Alert(b[ipv4Header:ihl]); err != nil {
		return err
	}
	if err := ParseIGMP(b[ihl:total], &p.Message); err != nil {
		return err
	}
	if p.HopLimit != 1 {
		return ErrHopLimit
	}
	return nil
}

// ipv4Alert walks IPv4 options (RFC 791 §3.1) and reports whether they
// hold a Router Alert.
func ipv4Alert(opts []byte) (bool, error) {
	alert := false
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of option list
			return alert, nil
		case 1: // no operation
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			return false, ErrTruncated
		}
		alert = alert || opts[0] == ipv4RouterAlert
		opts = opts[opts[1]:]
	}
	return alert, nil
}

func parse6(b []byte, p *Packet) error {
	if len(b) < ipv6Header {
		return ErrTruncated
	}
	end := ipv6Header + int(binary.BigEndian.Uint16(b[4:6]))
	if end > len(b) {
		return ErrTruncated
	}
	b = b[:end]
	p.HopLimit = b[7]
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], ipv6Header
	for i := 0; next != protoICMPv6; i++ {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
		case protoFragment:
			return ErrFragment
		default:
			return ErrNotMembership
		}
		if i == maxExtHeaders || (next == protoHopByHop && i != 0) {
			return ErrTruncated
		}
		if len(b)-off < 8 {
			return ErrTruncated
		}
		size := (int(b[off+1]) + 1) * 8
		if len(b)-off < size {
			return ErrTruncated
		}
		if next == protoHopByHop {
			alert, err := ipv6Alert(b[off+2 : off+size])
			if err != nil {
				return err
			}
			p.RouterAlert = alert
		}
		next, off = b[off], off+size
	}
	if err := ParseMLD(b[off:], p.Src, p.Dst, &p.Message); err != nil {
		return err
	}
	switch {
	case p.HopLimit != 1:
		return ErrHopLimit
	case !p.RouterAlert:
		return ErrRouterAlert
	case p.Kind == KindQuery && !p.Src.IsLinkLocalUnicast():
		return ErrSource
	case !p.Src.IsLinkLocalUnicast() && !p.Src.IsUnspecified():
		return ErrSource
	}
	return nil
}

// ipv6Alert walks the options of a hop-by-hop header (RFC 8200 §4.2) and
// reports whether they hold a Router Alert.
func ipv6Alert(opts []byte) (bool, error) {
	alert := false
	for len(opts) > 0 {
		if opts[0] == 0 { // Pad1
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || 2+int(opts[1]) > len(opts) {
			return false, ErrTruncated
		}
		alert = alert || (opts[0] == ipv6RouterAlert && opts[1] == 2)
		opts = opts[2+int(opts[1]):]
	}
	return alert, nil
}
