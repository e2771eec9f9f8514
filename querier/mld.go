package querier

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// ICMPv6 types of MLD (RFC 2710 §3, RFC 3810 §5).
const (
	mldQuery    = 130
	mldV1Report = 131
	mldV1Done   = 132
	mldV2Report = 143
)

const (
	mldV1Len    = 24 // type, code, checksum, max resp delay, reserved, address
	mldV2Query  = 28 // plus resv/S/QRV, QQIC, number of sources
	mldV2Header = 8  // of a report: type, reserved, checksum, reserved, count
)

// ParseMLD decodes msg, an ICMPv6 message sent from src to dst (the
// addresses enter the checksum), into m, as ParseIGMP does for IGMP. The
// version of a query follows from its length (RFC 3810 §8.1). Other ICMPv6
// types return ErrNotMembership.
func ParseMLD(msg []byte, src, dst netip.Addr, m *Message) error {
	m.reset()
	if len(msg) < 4 {
		return ErrTruncated
	}
	switch msg[0] {
	case mldQuery, mldV1Report, mldV1Done, mldV2Report:
	default:
		return ErrNotMembership
	}
	if icmp6Checksum(src, dst, msg) != 0 {
		return ErrChecksum
	}
	if msg[0] == mldV2Report {
		if len(msg) < mldV2Header {
			return ErrTruncated
		}
		m.Kind, m.Protocol = KindRecords, MLDv2
		return parseRecords(m, msg[mldV2Header:], int(binary.BigEndian.Uint16(msg[6:8])), 16)
	}
	if len(msg) < mldV1Len {
		return ErrTruncated
	}
	group := netip.AddrFrom16([16]byte(msg[8:24]))
	code := binary.BigEndian.Uint16(msg[4:6])
	switch msg[0] {
	case mldV1Report:
		m.Kind, m.Protocol, m.Group = KindReport, MLDv1, group
		return checkReportGroup(group)
	case mldV1Done:
		m.Kind, m.Protocol, m.Group = KindLeave, MLDv1, group
		return checkReportGroup(group)
	}
	m.Kind, m.Group = KindQuery, group
	switch {
	case len(msg) == mldV1Len:
		m.Protocol = MLDv1
		m.MaxResp = mldUnit * time.Duration(code)
	case len(msg) >= mldV2Query:
		m.Protocol = MLDv2
		m.MaxResp = mldUnit * time.Duration(decodeFloat(uint32(code), mant16))
		if err := parseQueryTail(m, msg[mldV1Len:], 16); err != nil {
			return err
		}
	default:
		return ErrQueryLength
	}
	return checkQueryGroup(m)
}

// AppendMLD appends m, encoded as an MLD message (ICMPv6) from src to dst,
// to b and returns the extended slice. It fails as AppendIGMP does. The
// checksum covers the IPv6 pseudo-header of src and dst; a raw ICMPv6
// socket recomputes it on send anyway (raw(7): the kernel always computes
// ICMPv6 checksums), so the sender may pass any addresses.
func AppendMLD(b []byte, m *Message, src, dst netip.Addr) ([]byte, error) {
	if m.Protocol.Family() != IPv6 {
		return b, errFamily
	}
	start := len(b)
	var err error
	switch m.Kind {
	case KindQuery:
		b, err = appendMLDQuery(b, m)
	case KindReport, KindLeave:
		if m.Protocol != MLDv1 {
			return b, errKind
		}
		if !m.Group.Is6() {
			return b, errFamily
		}
		typ := byte(mldV1Report)
		if m.Kind == KindLeave {
			typ = mldV1Done
		}
		b = append(b, typ, 0, 0, 0, 0, 0, 0, 0)
		b = append(b, m.Group.AsSlice()...)
	case KindRecords:
		if m.Protocol != MLDv2 {
			return b, errKind
		}
		b = append(b, mldV2Report, 0, 0, 0, 0, 0)
		b, err = appendRecords(b, m.Records, 16)
	default:
		return b, errKind
	}
	if err != nil {
		return b[:start], err
	}
	binary.BigEndian.PutUint16(b[start+2:], icmp6Checksum(src, dst, b[start:]))
	return b, nil
}

func appendMLDQuery(b []byte, m *Message) ([]byte, error) {
	if !m.Group.Is6() {
		return b, errFamily
	}
	b = append(b, mldQuery, 0, 0, 0)
	if m.Protocol == MLDv1 {
		if m.Suppress || m.QRV != 0 || m.QQI != 0 || len(m.Sources) > 0 {
			return b, errFields
		}
		b = binary.BigEndian.AppendUint16(b, uint16(min(units(m.MaxResp, mldUnit), 0xffff)))
		b = append(b, 0, 0)
		return append(b, m.Group.AsSlice()...), nil
	}
	if len(m.Sources) > 0xffff {
		return b, errTooMany
	}
	b = binary.BigEndian.AppendUint16(b, uint16(encodeFloat(units(m.MaxResp, mldUnit), mant16)))
	b = append(b, 0, 0)
	b = append(b, m.Group.AsSlice()...)
	b = append(b, flags(m), byte(encodeFloat(units(m.QQI, qqiUnit), mant8)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Sources)))
	return appendAddrList(b, m.Sources, 16)
}
