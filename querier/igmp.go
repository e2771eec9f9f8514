package querier

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// IGMP message types (RFC 3376 §4, RFC 2236 §2.1).
const (
	igmpQuery    = 0x11
	igmpV1Report = 0x12
	igmpV2Report = 0x16
	igmpV2Leave  = 0x17
	igmpV3Report = 0x22
)

const (
	igmpHeader   = 8  // type, code, checksum, group: every IGMP message
	igmpV3Query  = 12 // plus resv/S/QRV, QQIC, number of sources
	igmpV3Record = 8  // type, aux len, number of sources, group
)

// ParseIGMP decodes msg, the payload of an IPv4 packet of protocol 2 (the
// whole IGMP message, checksum included), into m. m's slices are reused;
// on error its contents are unspecified. The version of a query follows
// from its length and Max Resp Code (RFC 3376 §7.1). Bytes after the last
// source of an IGMPv3 query or record are ignored, as RFC 3376 §4.1.10
// says. ParseIGMP never panics: every count is checked against the bytes
// present before anything is read or allocated.
func ParseIGMP(msg []byte, m *Message) error {
	m.reset()
	if len(msg) < igmpHeader {
		return ErrTruncated
	}
	if igmpChecksum(msg) != 0 {
		return ErrChecksum
	}
	group := netip.AddrFrom4([4]byte(msg[4:8]))
	code := msg[1]
	switch msg[0] {
	case igmpQuery:
		m.Kind, m.Group = KindQuery, group
		switch {
		case len(msg) == igmpHeader && code == 0:
			m.Protocol = IGMPv1
		case len(msg) == igmpHeader:
			m.Protocol = IGMPv2
			m.MaxResp = igmpUnit * time.Duration(code)
		case len(msg) >= igmpV3Query:
			m.Protocol = IGMPv3
			m.MaxResp = igmpUnit * time.Duration(decodeFloat(uint32(code), mant8))
			if err := parseQueryTail(m, msg[igmpHeader:], 4); err != nil {
				return err
			}
		default:
			return ErrQueryLength
		}
		return checkQueryGroup(m)
	case igmpV1Report, igmpV2Report, igmpV2Leave:
		m.Kind, m.Protocol, m.Group = KindReport, IGMPv2, group
		switch msg[0] {
		case igmpV1Report:
			m.Protocol = IGMPv1
		case igmpV2Leave:
			m.Kind = KindLeave
		}
		return checkReportGroup(group)
	case igmpV3Report:
		m.Kind, m.Protocol = KindRecords, IGMPv3
		return parseRecords(m, msg[igmpHeader:], int(binary.BigEndian.Uint16(msg[6:8])), 4)
	}
	return ErrNotMembership
}

// parseQueryTail decodes what IGMPv3 and MLDv2 queries add after the
// group (b starts there): Resv/S/QRV, QQIC, the source count and the
// sources of addrLen bytes each.
func parseQueryTail(m *Message, b []byte, addrLen int) error {
	m.Suppress = b[0]&0x08 != 0
	m.QRV = b[0] & 0x07
	m.QQI = qqiUnit * time.Duration(decodeFloat(uint32(b[1]), mant8))
	n := int(binary.BigEndian.Uint16(b[2:4]))
	var err error
	m.Sources, err = appendAddrs(m.Sources, b[4:], n, addrLen)
	return err
}

// appendAddrs appends n addresses of size bytes each from b to dst.
func appendAddrs(dst []netip.Addr, b []byte, n, size int) ([]netip.Addr, error) {
	if len(b) < n*size {
		return dst, ErrTruncated
	}
	for i := 0; i < n; i++ {
		dst = append(dst, addrFrom(b[i*size:(i+1)*size]))
	}
	return dst, nil
}

// addrFrom returns the 4- or 16-byte address in b.
func addrFrom(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b))
}

// parseRecords decodes n group records of an IGMPv3 (addrLen 4) or MLDv2
// (addrLen 16) report from b into m. Records of unknown type are skipped,
// as are records for a group that is not multicast (RFC 3376 §4.2.12 has
// receivers ignore what they do not understand; one bad record must not
// cost the others).
func parseRecords(m *Message, b []byte, n, addrLen int) error {
	head := 4 + addrLen
	for i := 0; i < n; i++ {
		if len(b) < head {
			return ErrTruncated
		}
		typ, aux := RecordType(b[0]), int(b[1])*4
		ns := int(binary.BigEndian.Uint16(b[2:4]))
		size := head + ns*addrLen + aux
		if len(b) < size {
			return ErrTruncated
		}
		group := addrFrom(b[4:head])
		if typ >= IsInclude && typ <= Block && checkReportGroup(group) == nil {
			r := m.addRecord(typ, group)
			r.Sources, _ = appendAddrs(r.Sources, b[head:], ns, addrLen)
		}
		b = b[size:]
	}
	return nil
}

// checkQueryGroup checks the group of a query: unspecified (general query,
// which has no sources) or multicast.
func checkQueryGroup(m *Message) error {
	if m.Group.IsUnspecified() {
		if len(m.Sources) > 0 {
			return ErrGroup
		}
		return nil
	}
	if !m.Group.IsMulticast() {
		return ErrGroup
	}
	return nil
}

// checkReportGroup checks the group of a report, leave or record: a
// multicast address other than all-hosts (224.0.0.1) or all-nodes (ff02::1),
// for which no host reports (RFC 2236 §3, RFC 3810 §6), and of IPv6 scope
// above interface-local (RFC 3810 §6: no MLD for scopes 0 and 1).
func checkReportGroup(g netip.Addr) error {
	if !g.IsMulticast() || g == allHosts || g == allNodes {
		return ErrGroup
	}
	if g.Is6() && g.As16()[1]&0x0f <= 1 {
		return ErrGroup
	}
	return nil
}

// The all-systems groups: general queries go to them, and no host reports
// them.
var (
	allHosts = netip.AddrFrom4([4]byte{224, 0, 0, 1})
	allNodes = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})
)

// Errors of the encoders: the message cannot be put on the wire as asked.
var (
	errKind      = errors.New("message kind does not exist in this protocol version")
	errFamily    = errors.New("address of the wrong family")
	errTooMany   = errors.New("too many sources or records for one message")
	errNoMaxResp = errors.New("IGMPv2 query needs a Max Resp Time of at least 100 ms")
	errFields    = errors.New("source-filter fields in a query of a version without them")
)

// AppendIGMP appends m, encoded as an IGMP message with its checksum, to b
// and returns the extended slice. It fails, returning b unchanged, when m
// cannot be encoded as it is: a kind its protocol lacks (an IGMPv1 leave),
// source-filter fields in an IGMPv1 or IGMPv2 query, an IGMPv2 query with a
// Max Resp Time under 100 ms (it would read as IGMPv1), addresses of the
// wrong family, or more than 65535 sources or records. Times are rounded
// down to what their codes hold; a QRV above 7 is sent as 0 (RFC 3376
// §4.1.6).
func AppendIGMP(b []byte, m *Message) ([]byte, error) {
	if m.Protocol.Family() != IPv4 {
		return b, errFamily
	}
	start := len(b)
	var err error
	switch m.Kind {
	case KindQuery:
		b, err = appendIGMPQuery(b, m)
	case KindReport, KindLeave:
		typ := byte(igmpV2Report)
		switch {
		case m.Kind == KindReport && m.Protocol == IGMPv1:
			typ = igmpV1Report
		case m.Kind == KindLeave && m.Protocol == IGMPv2:
			typ = igmpV2Leave
		case m.Kind == KindReport && m.Protocol == IGMPv2:
		default:
			return b, errKind
		}
		if !m.Group.Is4() {
			return b, errFamily
		}
		b = append(b, typ, 0, 0, 0)
		b = append(b, m.Group.AsSlice()...)
	case KindRecords:
		if m.Protocol != IGMPv3 {
			return b, errKind
		}
		b = append(b, igmpV3Report, 0, 0, 0, 0, 0)
		b, err = appendRecords(b, m.Records, 4)
	default:
		return b, errKind
	}
	if err != nil {
		return b[:start], err
	}
	binary.BigEndian.PutUint16(b[start+2:], igmpChecksum(b[start:]))
	return b, nil
}

func appendIGMPQuery(b []byte, m *Message) ([]byte, error) {
	if !m.Group.Is4() {
		return b, errFamily
	}
	v3fields := m.Suppress || m.QRV != 0 || m.QQI != 0 || len(m.Sources) > 0
	var code byte
	switch m.Protocol {
	case IGMPv1:
		if v3fields || m.MaxResp != 0 {
			return b, errFields
		}
	case IGMPv2:
		if v3fields {
			return b, errFields
		}
		u := units(m.MaxResp, igmpUnit)
		if u == 0 {
			return b, errNoMaxResp
		}
		code = byte(min(u, 255))
	case IGMPv3:
		code = byte(encodeFloat(units(m.MaxResp, igmpUnit), mant8))
	}
	b = append(b, igmpQuery, code, 0, 0)
	b = append(b, m.Group.AsSlice()...)
	if m.Protocol != IGMPv3 {
		return b, nil
	}
	if len(m.Sources) > 0xffff {
		return b, errTooMany
	}
	b = append(b, flags(m), byte(encodeFloat(units(m.QQI, qqiUnit), mant8)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Sources)))
	return appendAddrList(b, m.Sources, 4)
}

// flags returns the Resv/S/QRV byte of an IGMPv3 or MLDv2 query.
func flags(m *Message) byte {
	f := m.QRV
	if f > 7 {
		f = 0
	}
	if m.Suppress {
		f |= 0x08
	}
	return f
}

// appendAddrList appends addrs, each of size bytes.
func appendAddrList(b []byte, addrs []netip.Addr, size int) ([]byte, error) {
	for _, a := range addrs {
		if a.BitLen() != size*8 {
			return b, errFamily
		}
		b = append(b, a.AsSlice()...)
	}
	return b, nil
}

// appendRecords appends the record count and the records of an IGMPv3
// (size 4) or MLDv2 (size 16) report.
func appendRecords(b []byte, recs []Record, size int) ([]byte, error) {
	if len(recs) > 0xffff {
		return b, errTooMany
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(recs)))
	for _, r := range recs {
		if r.Type < IsInclude || r.Type > Block {
			return b, errKind
		}
		if len(r.Sources) > 0xffff {
			return b, errTooMany
		}
		if r.Group.BitLen() != size*8 {
			return b, errFamily
		}
		b = append(b, byte(r.Type), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Sources)))
		b = append(b, r.Group.AsSlice()...)
		var err error
		if b, err = appendAddrList(b, r.Sources, size); err != nil {
			return b, err
		}
	}
	return b, nil
}
