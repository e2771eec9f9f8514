package querier

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// msgOpts compares messages: netip.Addr by value, nil and empty slices alike.
var msgOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

var (
	a  = netip.MustParseAddr
	v4 = netip.IPv4Unspecified()
	v6 = netip.IPv6Unspecified()
)

// kernelPackets were captured with tcpdump from Linux 6.18 in network
// namespaces: a host joining and leaving 239.1.2.3 and ff3e::1234 (any
// source and source-specific, with force_igmp_version 2 and
// force_mld_version 1 for the older versions) behind a Linux bridge whose
// own querier was on (mcast_querier 1, mcast_query_use_ifaddr 1). They are
// the IP packets, Ethernet header removed.
var kernelPackets = []struct {
	name string
	hex  string
	want Packet
}{
	{
		name: "IGMPv3 report ALLOW two sources",
		hex:  "46c00030000040000102f9e70a090001e0000016940400002200d3d60000000105000002ef0102030a0900070a090008",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.22"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: IGMPv3,
			Records: []Record{{Type: Allow, Group: a("239.1.2.3"), Sources: addrs("10.9.0.7", "10.9.0.8")}},
		}},
	},
	{
		name: "IGMPv3 report IS_IN two sources",
		hex:  "46c00030000040000102f9e70a090001e0000016940400002200d7d60000000101000002ef0102030a0900070a090008",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.22"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: IGMPv3,
			Records: []Record{{Type: IsInclude, Group: a("239.1.2.3"), Sources: addrs("10.9.0.7", "10.9.0.8")}},
		}},
	},
	{
		name: "IGMPv3 report BLOCK two sources",
		hex:  "46c00030000040000102f9e70a090001e0000016940400002200d2d60000000106000002ef0102030a0900080a090007",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.22"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: IGMPv3,
			Records: []Record{{Type: Block, Group: a("239.1.2.3"), Sources: addrs("10.9.0.8", "10.9.0.7")}},
		}},
	},
	{
		name: "IGMPv3 report TO_EX no sources (join)",
		hex:  "46c00028000040000102f9ef0a090001e0000016940400002200e8f90000000104000000ef010203",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.22"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: IGMPv3, Records: []Record{{Type: ToExclude, Group: a("239.1.2.3")}},
		}},
	},
	{
		name: "IGMPv3 report TO_IN no sources (leave)",
		hex:  "46c00028000040000102f9ef0a090001e0000016940400002200e9f90000000103000000ef010203",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.22"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: IGMPv3, Records: []Record{{Type: ToInclude, Group: a("239.1.2.3")}},
		}},
	},
	{
		name: "IGMPv3 general query",
		hex:  "46c00024000040000102fa070a090002e000000194040000110aecf30000000002020000",
		want: Packet{Src: a("10.9.0.2"), Dst: a("224.0.0.1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: IGMPv3, Group: v4, MaxResp: time.Second, QRV: 2, QQI: 2 * time.Second,
		}},
	},
	{
		name: "IGMPv3 group-specific query with S flag",
		hex:  "46c00024000040000102e9040a090002ef01020394040000110af3eeef0102030a020000",
		want: Packet{Src: a("10.9.0.2"), Dst: a("239.1.2.3"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: IGMPv3, Group: a("239.1.2.3"), MaxResp: time.Second, Suppress: true, QRV: 2, QQI: 2 * time.Second,
		}},
	},
	{
		name: "IGMPv3 group-and-source-specific query",
		hex:  "46c0002c000040000102e8fc0a090002ef01020394040000110ae7cbef010203020200020a0900080a090007",
		want: Packet{Src: a("10.9.0.2"), Dst: a("239.1.2.3"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: IGMPv3, Group: a("239.1.2.3"), MaxResp: time.Second, QRV: 2, QQI: 2 * time.Second,
			Sources: addrs("10.9.0.8", "10.9.0.7"),
		}},
	},
	{
		name: "IGMPv2 report",
		hex:  "46c00020000040000102e9090a090001ef010203940400001600f8faef010203",
		want: Packet{Src: a("10.9.0.1"), Dst: a("239.1.2.3"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindReport, Protocol: IGMPv2, Group: a("239.1.2.3"),
		}},
	},
	{
		name: "IGMPv2 leave",
		hex:  "46c00020000040000102fa0b0a090001e0000002940400001700f7faef010203",
		want: Packet{Src: a("10.9.0.1"), Dst: a("224.0.0.2"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindLeave, Protocol: IGMPv2, Group: a("239.1.2.3"),
		}},
	},
	{
		name: "IGMPv2 general query",
		hex:  "46c00020000040000102fa0b0a090002e000000194040000110aeef500000000",
		want: Packet{Src: a("10.9.0.2"), Dst: a("224.0.0.1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: IGMPv2, Group: v4, MaxResp: time.Second,
		}},
	},
	{
		name: "IGMPv2 group-specific query",
		hex:  "46c00020000040000102fa0b0a090002e000000194040000110afdf0ef010203",
		want: Packet{Src: a("10.9.0.2"), Dst: a("224.0.0.1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: IGMPv2, Group: a("239.1.2.3"), MaxResp: time.Second,
		}},
	},
	{
		name: "MLDv2 report ALLOW two sources",
		hex:  "6000000000440001fe80000000000000907b8afffe07ca58ff0200000000000000000000000000163a000502000001008f007e8c0000000105000002ff3e0000000000000000000000001234fd000000000000000000000000000007fd000000000000000000000000000008",
		want: Packet{Src: a("fe80::907b:8aff:fe07:ca58"), Dst: a("ff02::16"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: MLDv2,
			Records: []Record{{Type: Allow, Group: a("ff3e::1234"), Sources: addrs("fd00::7", "fd00::8")}},
		}},
	},
	{
		name: "MLDv2 report IS_IN and IS_EX",
		hex:  "6000000000580001fe80000000000000907b8afffe07ca58ff0200000000000000000000000000163a000502000001008f00b8120000000201000002ff3e0000000000000000000000001234fd000000000000000000000000000007fd00000000000000000000000000000802000000ff0200000000000000000001ff07ca58",
		want: Packet{Src: a("fe80::907b:8aff:fe07:ca58"), Dst: a("ff02::16"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: MLDv2,
			Records: []Record{
				{Type: IsInclude, Group: a("ff3e::1234"), Sources: addrs("fd00::7", "fd00::8")},
				{Type: IsExclude, Group: a("ff02::1:ff07:ca58")},
			},
		}},
	},
	{
		name: "MLDv2 report TO_IN no sources (leave)",
		hex:  "6000000000240001fe8000000000000058d87ffffe5ed2d2ff0200000000000000000000000000163a000502000001008f00b4910000000103000000ff3e0000000000000000000000001234",
		want: Packet{Src: a("fe80::58d8:7fff:fe5e:d2d2"), Dst: a("ff02::16"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindRecords, Protocol: MLDv2, Records: []Record{{Type: ToInclude, Group: a("ff3e::1234")}},
		}},
	},
	{
		name: "MLDv2 general query",
		hex:  "6000000000240001fe80000000000000907244fffe6686ccff0200000000000000000000000000013a0005020000000082001f9503e800000000000000000000000000000000000002020000",
		want: Packet{Src: a("fe80::9072:44ff:fe66:86cc"), Dst: a("ff02::1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: MLDv2, Group: v6, MaxResp: time.Second, QRV: 2, QQI: 2 * time.Second,
		}},
	},
	{
		name: "MLDv2 group-specific query with S flag",
		hex:  "6000000000240001fe8000000000000078667bfffe57c59bff3e00000000000000000000000012343a00050200000000820095fe03e80000ff3e00000000000000000000000012340a020000",
		want: Packet{Src: a("fe80::7866:7bff:fe57:c59b"), Dst: a("ff3e::1234"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: MLDv2, Group: a("ff3e::1234"), MaxResp: time.Second, Suppress: true, QRV: 2, QQI: 2 * time.Second,
		}},
	},
	{
		name: "MLDv2 address-and-source-specific query",
		hex:  "6000000000440001fe80000000000000907244fffe6686ccff3e00000000000000000000000012343a000502000000008200018003e80000ff3e000000000000000000000000123402020002fd000000000000000000000000000008fd000000000000000000000000000007",
		want: Packet{Src: a("fe80::9072:44ff:fe66:86cc"), Dst: a("ff3e::1234"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: MLDv2, Group: a("ff3e::1234"), MaxResp: time.Second, QRV: 2, QQI: 2 * time.Second,
			Sources: addrs("fd00::8", "fd00::7"),
		}},
	},
	{
		name: "MLDv1 report",
		hex:  "6000000000200001fe80000000000000c4c0c7fffe409586ff3e00000000000000000000000012343a0005020000010083003abe00000000ff3e0000000000000000000000001234",
		want: Packet{Src: a("fe80::c4c0:c7ff:fe40:9586"), Dst: a("ff3e::1234"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindReport, Protocol: MLDv1, Group: a("ff3e::1234"),
		}},
	},
	{
		name: "MLDv1 done",
		hex:  "6000000000200001fe80000000000000c4c0c7fffe409586ff0200000000000000000000000000023a0005020000010084004c2c00000000ff3e0000000000000000000000001234",
		want: Packet{Src: a("fe80::c4c0:c7ff:fe40:9586"), Dst: a("ff02::2"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindLeave, Protocol: MLDv1, Group: a("ff3e::1234"),
		}},
	},
	{
		name: "MLDv1 general query",
		hex:  "6000000000200001fe800000000000002cef87fffef22baeff0200000000000000000000000000013a0005020000000082009cb003e8000000000000000000000000000000000000",
		want: Packet{Src: a("fe80::2cef:87ff:fef2:2bae"), Dst: a("ff02::1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: MLDv1, Group: v6, MaxResp: time.Second,
		}},
	},
	{
		name: "MLDv1 address-specific query",
		hex:  "6000000000200001fe800000000000002cef87fffef22baeff0200000000000000000000000000013a0005020000000082008b3d03e80000ff3e0000000000000000000000001234",
		want: Packet{Src: a("fe80::2cef:87ff:fef2:2bae"), Dst: a("ff02::1"), HopLimit: 1, RouterAlert: true, Message: Message{
			Kind: KindQuery, Protocol: MLDv1, Group: a("ff3e::1234"), MaxResp: time.Second,
		}},
	},
}

// TestKernelPackets parses what Linux sends and encodes each message back
// to the very bytes Linux put on the wire.
func TestKernelPackets(t *testing.T) {
	for _, tc := range kernelPackets {
		t.Run(tc.name, func(t *testing.T) {
			pkt := unhex(t, tc.hex)
			var got Packet
			if err := ParsePacket(pkt, &got); err != nil {
				t.Fatalf("ParsePacket: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, msgOpts); diff != "" {
				t.Errorf("ParsePacket (-want +got):\n%s", diff)
			}
			var enc []byte
			var err error
			var wire []byte
			if tc.want.Src.Is4() {
				wire = pkt[(pkt[0]&0x0f)*4:]
				enc, err = AppendIGMP(nil, &tc.want.Message)
			} else {
				wire = pkt[48:] // IPv6 header and an 8-byte hop-by-hop header
				enc, err = AppendMLD(nil, &tc.want.Message, tc.want.Src, tc.want.Dst)
			}
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if diff := cmp.Diff(hex.EncodeToString(wire), hex.EncodeToString(enc)); diff != "" {
				t.Errorf("encoded message differs from the kernel's (-kernel +ours):\n%s", diff)
			}
		})
	}
}

// TestRFCMessages covers what the kernel captures do not: IGMPv1, the long
// forms of the time codes, auxiliary data and unknown record types, built
// byte by byte from RFC 1112, RFC 3376 §4 and RFC 3810 §5.
func TestRFCMessages(t *testing.T) {
	tests := []struct {
		name string
		igmp string // IGMP message without checksum (bytes 2-3 zero); filled in by the test
		want Message
	}{
		{
			name: "IGMPv1 query: 8 bytes, code 0",
			igmp: "1100000000000000",
			want: Message{Kind: KindQuery, Protocol: IGMPv1, Group: v4},
		},
		{
			name: "IGMPv1 report",
			igmp: "12000000e8010101",
			want: Message{Kind: KindReport, Protocol: IGMPv1, Group: a("232.1.1.1")},
		},
		{
			name: "IGMPv2 query: code is linear up to 255 (25.5 s)",
			igmp: "11ff0000e8010101",
			want: Message{Kind: KindQuery, Protocol: IGMPv2, Group: a("232.1.1.1"), MaxResp: 25500 * time.Millisecond},
		},
		{
			name: "IGMPv3 query: Max Resp Code 0x80 is 12.8 s, QQIC 0xff is 31744 s, QRV 7",
			igmp: "118000000000000007ff0000",
			want: Message{Kind: KindQuery, Protocol: IGMPv3, Group: v4, MaxResp: 12800 * time.Millisecond, QRV: 7, QQI: 31744 * time.Second},
		},
		{
			name: "IGMPv3 query: code 0x8a is (0x10|0xa)<<3 = 208 tenths, QQIC 125; reserved bits and trailing bytes ignored",
			igmp: "118a000000000000f27d0000deadbeef",
			want: Message{Kind: KindQuery, Protocol: IGMPv3, Group: v4, MaxResp: 20800 * time.Millisecond, QRV: 2, QQI: 125 * time.Second},
		},
		{
			name: "IGMPv3 report: aux data skipped, unknown record type and non-multicast group left out",
			igmp: "22000000000000030401000" + "1e8010101" + "0a000001" + "cafef00d" +
				"07000000e8010102" + "02000000" + "0a000002",
			want: Message{Kind: KindRecords, Protocol: IGMPv3, Records: []Record{
				{Type: ToExclude, Group: a("232.1.1.1"), Sources: addrs("10.0.0.1")},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := unhex(t, tc.igmp)
			c := igmpChecksum(msg)
			msg[2], msg[3] = byte(c>>8), byte(c)
			var got Message
			if err := ParseIGMP(msg, &got); err != nil {
				t.Fatalf("ParseIGMP: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, msgOpts); diff != "" {
				t.Errorf("ParseIGMP (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBadPackets feeds the checks every kind of bad input: each must be
// refused with the reason the receiver counts.
func TestBadPackets(t *testing.T) {
	good4 := "46c00024000040000102fa070a090002e000000194040000110aecf30000000002020000"
	good6 := "6000000000240001fe80000000000000907244fffe6686ccff0200000000000000000000000000013a0005020000000082001f9503e800000000000000000000000000000000000002020000"
	patch := func(s string, off int, b ...byte) string {
		p := unhex(t, s)
		copy(p[off:], b)
		return hex.EncodeToString(p)
	}
	// fix4 recomputes the IPv4 header checksum and the IGMP checksum.
	fix4 := func(s string) string {
		p := unhex(t, s)
		ihl := int(p[0]&0x0f) * 4
		p[10], p[11] = 0, 0
		c := igmpChecksum(p[:ihl])
		p[10], p[11] = byte(c>>8), byte(c)
		p[ihl+2], p[ihl+3] = 0, 0
		c = igmpChecksum(p[ihl:])
		p[ihl+2], p[ihl+3] = byte(c>>8), byte(c)
		return hex.EncodeToString(p)
	}
	// fix6 recomputes the ICMPv6 checksum of a packet with an 8-byte
	// hop-by-hop header.
	fix6 := func(s string) string {
		p := unhex(t, s)
		p[50], p[51] = 0, 0
		c := icmp6Checksum(netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[48:])
		p[50], p[51] = byte(c>>8), byte(c)
		return hex.EncodeToString(p)
	}
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"IPv4 header cut", good4[:30], ErrTruncated},
		{"IPv4 total length beyond the packet", good4[:len(good4)-2], ErrTruncated},
		{"IPv4 header checksum", patch(good4, 10, 0, 0), ErrChecksum},
		{"IGMP checksum", patch(good4, 26, 0, 0), ErrChecksum},
		{"TTL 2", fix4(patch(good4, 8, 2)), ErrHopLimit},
		{"fragment", fix4(patch(good4, 6, 0x20)), ErrFragment},
		{"UDP", fix4(patch(good4, 9, 17)), ErrNotMembership},
		{"IGMP DVMRP type", fix4(patch(good4, 24, 0x13)), ErrNotMembership},
		{"IPv4 option length runs past the header", fix4(patch(good4, 21, 9)), ErrTruncated},
		{"IGMP query of 10 bytes", fix4(patch(good4[:len(good4)-4], 2, 0, 0x22)), ErrQueryLength},
		{"IGMPv3 general query with a source", fix4("46c00028000040000102fa070a090002e0000001940400001100000000000000020200010a000001"), ErrGroup},
		{"IGMPv3 query source count beyond the packet", fix4(patch(good4, 34, 0, 5)), ErrTruncated},
		{"IGMPv2 report for a unicast group", fix4("46c00020000040000102e9090a090001ef010203940400001600f8fa0a010203"), ErrGroup},
		{"IGMPv2 report for all-hosts", fix4("46c00020000040000102e9090a090001ef010203940400001600f8fae0000001"), ErrGroup},
		{"IGMPv3 report record count beyond the packet", fix4("46c00028000040000102f9ef0a090001e0000016940400002200e8f90000000204000000ef010203"), ErrTruncated},
		{"IGMPv3 report aux length beyond the packet", fix4("46c00028000040000102f9ef0a090001e0000016940400002200e8f90000000104050000ef010203"), ErrTruncated},
		{"IPv6 payload length beyond the packet", patch(good6, 4, 0, 0x30), ErrTruncated},
		{"ICMPv6 checksum", patch(good6, 50, 0, 0), ErrChecksum},
		{"MLD hop limit 255", patch(good6, 7, 255), ErrHopLimit},
		{"MLD without router alert", fix6(patch(good6, 42, 1, 2, 0, 0)), ErrRouterAlert},
		{"MLD query from a global address", fix6(patch(good6, 8, 0xfd)), ErrSource},
		{"MLD query from ::", fix6(patch(good6, 8, 0, 0, 0, 0, 0, 0, 0, 0)), ErrSource},
		{"MLD query of 26 bytes", fix6(patch(good6[:len(good6)-4], 4, 0, 0x22)), ErrQueryLength},
		{"hop-by-hop option runs past its header", patch(good6, 46, 1, 9), ErrTruncated},
		{"ICMPv6 echo", fix6(patch(good6, 48, 128)), ErrNotMembership},
		{"IPv6 fragment header", patch(good6, 40, 44), ErrFragment},
		{"IPv6 extension header chain too long", longChain(t, good6), ErrTruncated},
		{"second hop-by-hop header", patch(longChain(t, good6), 48, 0), ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := ParsePacket(unhex(t, tc.hex), &p); !errors.Is(err, tc.want) {
				t.Errorf("ParsePacket = %v, want %v", err, tc.want)
			}
		})
	}
}

// longChain inserts four destination-options headers between the
// hop-by-hop header and the ICMPv6 message of good, an MLD packet with an
// 8-byte hop-by-hop header.
func longChain(t testing.TB, good string) string {
	p := unhex(t, good)
	var ext []byte
	for i := 0; i < 4; i++ {
		next := byte(protoDestOpts)
		if i == 3 {
			next = protoICMPv6
		}
		ext = append(ext, next, 0, 1, 4, 0, 0, 0, 0)
	}
	out := append([]byte{}, p[:48]...)
	out[40] = protoDestOpts
	out = append(out, ext...)
	out = append(out, p[48:]...)
	plen := len(out) - 40
	out[4], out[5] = byte(plen>>8), byte(plen)
	return hex.EncodeToString(out)
}

// TestReportFromUnspecified accepts an MLD report from ::, which hosts send
// during duplicate address detection (RFC 3590).
func TestReportFromUnspecified(t *testing.T) {
	m := Message{Kind: KindReport, Protocol: MLDv1, Group: a("ff3e::1234")}
	pkt := buildIPv6(t, v6, a("ff3e::1234"), &m)
	var p Packet
	if err := ParsePacket(pkt, &p); err != nil {
		t.Fatalf("ParsePacket of a report from ::: %v", err)
	}
}

// buildIPv6 wraps m in an IPv6 packet with hop limit 1 and a hop-by-hop
// Router Alert header, as Linux sends MLD.
func buildIPv6(t testing.TB, src, dst netip.Addr, m *Message) []byte {
	t.Helper()
	body, err := AppendMLD(nil, m, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	pkt := []byte{0x60, 0, 0, 0, 0, 0, protoHopByHop, 1}
	pkt[4], pkt[5] = byte((len(body)+8)>>8), byte(len(body)+8)
	pkt = append(pkt, src.AsSlice()...)
	pkt = append(pkt, dst.AsSlice()...)
	pkt = append(pkt, protoICMPv6, 0, ipv6RouterAlert, 2, 0, 0, 1, 0)
	return append(pkt, body...)
}

// TestFloatCodes checks the long forms against RFC 3376 §4.1.1 and
// RFC 3810 §5.1.3 and that every code survives decoding and encoding.
func TestFloatCodes(t *testing.T) {
	tests := []struct {
		code  uint32
		mant  uint
		value uint32
	}{
		{127, mant8, 127},
		{0x80, mant8, 128},
		{0x8f, mant8, 248},
		{0x90, mant8, 256},
		{0xff, mant8, 31744},
		{0x7fff, mant16, 32767},
		{0x8000, mant16, 32768},
		{0xffff, mant16, 8387584},
	}
	for _, tc := range tests {
		if got := decodeFloat(tc.code, tc.mant); got != tc.value {
			t.Errorf("decodeFloat(%#x, %d) = %d, want %d", tc.code, tc.mant, got, tc.value)
		}
	}
	for _, m := range []uint{mant8, mant16} {
		for c := uint32(0); c < 1<<(m+4); c++ {
			v := decodeFloat(c, m)
			if got := encodeFloat(uint64(v), m); got != c {
				t.Fatalf("mant %d: encodeFloat(decodeFloat(%#x) = %d) = %#x", m, c, v, got)
			}
			// A value between two codes rounds down to the lower one.
			if c+1 < 1<<(m+4) && decodeFloat(c+1, m) > v+1 {
				if got := encodeFloat(uint64(v)+1, m); got != c {
					t.Fatalf("mant %d: encodeFloat(%d) = %#x, want %#x (round down)", m, v+1, got, c)
				}
			}
		}
	}
	if got := encodeFloat(1<<40, mant8); got != 0xff {
		t.Errorf("encodeFloat(huge) = %#x, want the largest code 0xff", got)
	}
}

// TestEncodeRefuses checks that messages that cannot exist on the wire are
// refused instead of sent garbled.
func TestEncodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"IGMPv1 leave", Message{Kind: KindLeave, Protocol: IGMPv1, Group: a("239.1.1.1")}},
		{"IGMPv2 query without a response time", Message{Kind: KindQuery, Protocol: IGMPv2, Group: v4}},
		{"IGMPv2 query with sources", Message{Kind: KindQuery, Protocol: IGMPv2, Group: a("239.1.1.1"), MaxResp: time.Second, Sources: addrs("10.0.0.1")}},
		{"IGMPv3 report with an IPv6 group", Message{Kind: KindRecords, Protocol: IGMPv3, Records: []Record{{Type: Allow, Group: a("ff3e::1")}}}},
		{"IGMPv3 query with an IPv6 source", Message{Kind: KindQuery, Protocol: IGMPv3, Group: a("239.1.1.1"), Sources: addrs("fd00::1")}},
		{"MLD message as IGMP", Message{Kind: KindReport, Protocol: MLDv1, Group: a("ff3e::1")}},
		{"record of no type", Message{Kind: KindRecords, Protocol: IGMPv3, Records: []Record{{Group: a("239.1.1.1")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := AppendIGMP([]byte{1, 2}, &tc.m); err == nil || len(b) != 2 {
				t.Errorf("AppendIGMP = %x, %v; want an error and b unchanged", b, err)
			}
		})
	}
	mld := Message{Kind: KindLeave, Protocol: MLDv2, Group: a("ff3e::1")}
	if _, err := AppendMLD(nil, &mld, v6, v6); err == nil {
		t.Error("AppendMLD encoded an MLDv2 done message, which does not exist")
	}
}
