package querier

import (
	"net/netip"
	"strconv"
	"time"
)

// Kind is what an IGMP or MLD message does. The zero value is invalid.
type Kind uint8

const (
	// KindQuery is a membership query: general (Group unspecified),
	// group-specific, or group-and-source-specific (Sources set; IGMPv3
	// and MLDv2 only).
	KindQuery Kind = iota + 1
	// KindReport is an IGMPv1 or IGMPv2 membership report or an MLDv1
	// listener report: "a listener for Group, any source".
	KindReport
	// KindLeave is an IGMPv2 leave group or an MLDv1 listener done message
	// for Group.
	KindLeave
	// KindRecords is an IGMPv3 membership report or MLDv2 listener report:
	// a list of group records, each with a source list.
	KindRecords
)

// String returns a short lowercase name of the kind.
func (k Kind) String() string {
	switch k {
	case KindQuery:
		return "query"
	case KindReport:
		return "report"
	case KindLeave:
		return "leave"
	case KindRecords:
		return "records"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// RecordType is the type of a group record in an IGMPv3 or MLDv2 report
// (RFC 3376 §4.2.12, RFC 3810 §5.2.12); the values are the wire values. The
// zero value is invalid.
type RecordType uint8

const (
	// IsInclude (MODE_IS_INCLUDE) answers a query: the host wants only
	// Sources.
	IsInclude RecordType = iota + 1
	// IsExclude (MODE_IS_EXCLUDE) answers a query: the host wants every
	// source but Sources.
	IsExclude
	// ToInclude (CHANGE_TO_INCLUDE_MODE): the host switched to INCLUDE
	// Sources; with no sources, it left the group.
	ToInclude
	// ToExclude (CHANGE_TO_EXCLUDE_MODE): the host switched to EXCLUDE
	// Sources; with no sources, it joined the group for any source.
	ToExclude
	// Allow (ALLOW_NEW_SOURCES): the host wants Sources too.
	Allow
	// Block (BLOCK_OLD_SOURCES): the host no longer wants Sources.
	Block
)

// String returns the record type's name in RFC 3376's tables: IS_IN,
// IS_EX, TO_IN, TO_EX, ALLOW, BLOCK.
func (t RecordType) String() string {
	switch t {
	case IsInclude:
		return "IS_IN"
	case IsExclude:
		return "IS_EX"
	case ToInclude:
		return "TO_IN"
	case ToExclude:
		return "TO_EX"
	case Allow:
		return "ALLOW"
	case Block:
		return "BLOCK"
	}
	return "RecordType(" + strconv.Itoa(int(t)) + ")"
}

// Message is one IGMP or MLD message, decoded (ParseIGMP, ParseMLD) or to
// be encoded (AppendIGMP, AppendMLD). One type covers both families and
// every version: they differ on the wire, not in meaning. Addresses are of
// the message's family (IPv4 addresses are 4-byte netip.Addrs, never
// IPv4-mapped).
type Message struct {
	Kind     Kind
	Protocol Protocol
	// Group is the group of a report or leave; of a query, the group
	// queried, or the unspecified address (0.0.0.0, ::) for a general
	// query. Unused for KindRecords.
	Group netip.Addr

	// The fields below are for queries.

	// MaxResp is the Max Resp Time: hosts answer within it. Zero in an
	// IGMPv1 query, which hosts take as 10 s. On the wire it is coded in
	// units of 100 ms (IGMP) or 1 ms (MLD), with a floating-point form
	// for large values in IGMPv3 and MLDv2; encoding rounds down to a
	// value the code can hold.
	MaxResp time.Duration
	// Suppress is the S flag of IGMPv3 and MLDv2 queries ("suppress
	// router-side processing"): other routers must not lower their
	// timers for it.
	Suppress bool
	// QRV is the querier's robustness variable (0..7; 0 when it is
	// larger than 7), QQI its query interval (whole seconds, coded like
	// IGMPv3's MaxResp). IGMPv3 and MLDv2 only; zero otherwise.
	QRV uint8
	QQI time.Duration
	// Sources are the sources of a group-and-source-specific query.
	Sources []netip.Addr

	// Records are the group records of a KindRecords report, in the
	// order of the packet. Records of unknown types are left out
	// (RFC 3376 §4.2.12: they are ignored).
	Records []Record
}

// Record is one group record of an IGMPv3 or MLDv2 report. Auxiliary data
// is skipped when parsing and never encoded.
type Record struct {
	Type    RecordType
	Group   netip.Addr
	Sources []netip.Addr
}

// reset empties m for reuse, keeping the capacity of its slices and of the
// source lists of its records.
func (m *Message) reset() {
	recs := m.Records[:0]
	srcs := m.Sources[:0]
	*m = Message{Sources: srcs, Records: recs}
}

// addRecord appends a record to m, reusing the source list of a record an
// earlier use of m left beyond len(m.Records).
func (m *Message) addRecord(t RecordType, group netip.Addr) *Record {
	if len(m.Records) < cap(m.Records) {
		m.Records = m.Records[:len(m.Records)+1]
		r := &m.Records[len(m.Records)-1]
		*r = Record{Type: t, Group: group, Sources: r.Sources[:0]}
		return r
	}
	m.Records = append(m.Records, Record{Type: t, Group: group})
	return &m.Records[len(m.Records)-1]
}
