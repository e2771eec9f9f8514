package packet_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/worker/packet"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

var (
	src4 = netip.MustParseAddrPort("10.0.0.9:40000")
	dst4 = netip.MustParseAddrPort("239.1.1.1:5000")
	src6 = netip.MustParseAddrPort("[fd00::9]:40000")
	dst6 = netip.MustParseAddrPort("[ff3e::1:1]:5000")
)

// udp4 and udp6 are the base packets the cases below edit.
func udp4(payload string) []byte { return packettest.BuildUDP4(src4, dst4, []byte(payload)) }
func udp6(payload string) []byte { return packettest.BuildUDP6(src6, dst6, []byte(payload)) }

// edit4 returns a copy of p changed by fn, with the IPv4 header checksum
// recomputed so that only fn's change matters.
func edit4(p []byte, fn func(p []byte)) []byte {
	q := bytes.Clone(p)
	fn(q)
	packettest.SetIPv4Checksum(q)
	return q
}

// edit returns a copy of p changed by fn.
func edit(p []byte, fn func(p []byte)) []byte {
	q := bytes.Clone(p)
	fn(q)
	return q
}

func put16(p []byte, off int, v uint16) { binary.BigEndian.PutUint16(p[off:], v) }

// withExts6 inserts one 8-byte extension header of each type in protos, in
// order, after the fixed header of the IPv6 packet p. A Fragment header (44)
// is an atomic fragment; the others carry one PadN option.
func withExts6(p []byte, protos ...byte) []byte {
	var exts []byte
	for i, proto := range protos {
		next := p[6]
		if i+1 < len(protos) {
			next = protos[i+1]
		}
		if proto == 44 {
			exts = append(exts, next, 0, 0, 0, 0, 0, 0, 1)
		} else {
			exts = append(exts, next, 0, 1, 4, 0, 0, 0, 0)
		}
	}
	q := append(append(append([]byte(nil), p[:40]...), exts...), p[40:]...)
	q[6] = protos[0]
	put16(q, 4, binary.BigEndian.Uint16(p[4:6])+uint16(len(exts)))
	return q
}

// withLongDestOpts6 inserts a 16-byte Destination Options header (Hdr Ext
// Len 1, one PadN option) after the fixed header of the IPv6 packet p.
func withLongDestOpts6(p []byte) []byte {
	opts := []byte{p[6], 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	q := append(append(append([]byte(nil), p[:40]...), opts...), p[40:]...)
	q[6] = 60
	put16(q, 4, binary.BigEndian.Uint16(p[4:6])+uint16(len(opts)))
	return q
}

// want4 and want6 are the Datagrams of udp4 and udp6 packets.
func want4(payloadOff, payloadLen int) packet.Datagram {
	return packet.Datagram{
		Dst: dst4.Addr().As16(), Src: src4.Addr().As16(), // As16 of an IPv4 address is IPv4-mapped
		SrcPort: src4.Port(), DstPort: dst4.Port(),
		PayloadOff: payloadOff, PayloadLen: payloadLen,
	}
}

func want6(payloadOff, payloadLen int) packet.Datagram {
	return packet.Datagram{
		Dst: dst6.Addr().As16(), Src: src6.Addr().As16(),
		SrcPort: src6.Port(), DstPort: dst6.Port(),
		PayloadOff: payloadOff, PayloadLen: payloadLen, V6: true,
	}
}

type parseCase struct {
	name string
	pkt  []byte
	want packet.Reason
	// dg is the expected Datagram when want is OK.
	dg packet.Datagram
}

func parseCases() []parseCase {
	jumbo4 := bytes.Repeat([]byte{0xa5}, 9000-28)
	jumbo6 := bytes.Repeat([]byte{0x5a}, 9000-48)
	frags4 := packettest.Fragment(udp4(string(bytes.Repeat([]byte("x"), 3000))), 1480)
	frags6 := packettest.Fragment(udp6(string(bytes.Repeat([]byte("y"), 3000))), 1448)
	routerAlert := []byte{0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00} // RA, NOP, NOP, NOP, EOL
	return []parseCase{
		// Accepted.
		{name: "ipv4 udp", pkt: udp4("hello"), want: packet.OK, dg: want4(28, 5)},
		{name: "ipv4 empty payload", pkt: udp4(""), want: packet.OK, dg: want4(28, 0)},
		{name: "ipv4 with options", pkt: packettest.WithIPv4Options(udp4("hello"), routerAlert), want: packet.OK, dg: want4(36, 5)},
		{name: "ipv4 ethernet padding ignored", pkt: append(udp4("a"), make([]byte, 17)...), want: packet.OK, dg: want4(28, 1)},
		{name: "ipv4 don't fragment set", pkt: edit4(udp4("hi"), func(p []byte) { p[6] = 0x40 }), want: packet.OK, dg: want4(28, 2)},
		{name: "ipv4 udp length shorter than ip payload", pkt: edit(udp4("hello"), func(p []byte) { put16(p, 24, 8+3) }), want: packet.OK, dg: want4(28, 3)},
		{name: "ipv4 9000-byte jumbo frame", pkt: packettest.BuildUDP4(src4, dst4, jumbo4), want: packet.OK, dg: want4(28, len(jumbo4))},
		{name: "ipv6 udp", pkt: udp6("hello"), want: packet.OK, dg: want6(48, 5)},
		{name: "ipv6 empty payload", pkt: udp6(""), want: packet.OK, dg: want6(48, 0)},
		{name: "ipv6 trailing bytes ignored", pkt: append(udp6("a"), make([]byte, 12)...), want: packet.OK, dg: want6(48, 1)},
		{name: "ipv6 9000-byte jumbo frame", pkt: packettest.BuildUDP6(src6, dst6, jumbo6), want: packet.OK, dg: want6(48, len(jumbo6))},
		{name: "ipv6 hop-by-hop", pkt: packettest.WithHopByHop6(udp6("hello")), want: packet.OK, dg: want6(56, 5)},
		{name: "ipv6 hop-by-hop routing destination options", pkt: withExts6(udp6("hello"), 0, 43, 60), want: packet.OK, dg: want6(72, 5)},
		{name: "ipv6 atomic fragment", pkt: withExts6(udp6("hello"), 44), want: packet.OK, dg: want6(56, 5)},
		{name: "ipv6 16-byte destination options", pkt: withLongDestOpts6(udp6("hello")), want: packet.OK, dg: want6(64, 5)},
		{name: "ipv6 eight extension headers", pkt: withExts6(udp6("x"), 0, 60, 43, 60, 43, 60, 43, 60), want: packet.OK, dg: want6(112, 1)},

		// Malformed.
		{name: "empty", pkt: nil, want: packet.Malformed},
		{name: "version 5", pkt: edit4(udp4("x"), func(p []byte) { p[0] = 0x55 }), want: packet.Malformed},
		{name: "version 0", pkt: make([]byte, 60), want: packet.Malformed},
		{name: "ipv4 shorter than header", pkt: udp4("x")[:19], want: packet.Malformed},
		{name: "ipv4 ihl 4", pkt: edit4(udp4("x"), func(p []byte) { p[0] = 0x44 }), want: packet.Malformed},
		{name: "ipv4 ihl past total length", pkt: edit4(udp4("x"), func(p []byte) { p[0] = 0x4f }), want: packet.Malformed},
		{name: "ipv4 total length beyond captured bytes", pkt: udp4("hello")[:30], want: packet.Malformed},
		{name: "ipv4 total length below header length", pkt: edit4(udp4("x"), func(p []byte) { put16(p, 2, 19) }), want: packet.Malformed},
		{name: "ipv4 total length too short for udp header", pkt: edit4(udp4("x"), func(p []byte) { put16(p, 2, 24) }), want: packet.Malformed},
		{name: "ipv4 bad header checksum", pkt: edit(udp4("x"), func(p []byte) { p[10] ^= 0xff }), want: packet.Malformed},
		{name: "ipv4 udp length beyond ip payload", pkt: edit(udp4("hello"), func(p []byte) { put16(p, 24, 8+6) }), want: packet.Malformed},
		{name: "ipv4 udp length below header", pkt: edit(udp4("hello"), func(p []byte) { put16(p, 24, 7) }), want: packet.Malformed},
		{name: "ipv4 udp length 0", pkt: edit(udp4("hello"), func(p []byte) { put16(p, 24, 0) }), want: packet.Malformed},
		{name: "ipv6 shorter than header", pkt: udp6("x")[:39], want: packet.Malformed},
		{name: "ipv6 payload length beyond captured bytes", pkt: udp6("hello")[:52], want: packet.Malformed},
		{name: "ipv6 jumbogram", pkt: edit(udp6("hello"), func(p []byte) { put16(p, 4, 0) }), want: packet.Malformed},
		{name: "ipv6 udp length beyond payload", pkt: edit(udp6("hello"), func(p []byte) { put16(p, 44, 8+6) }), want: packet.Malformed},
		{name: "ipv6 udp length 0", pkt: edit(udp6("hello"), func(p []byte) { put16(p, 44, 0) }), want: packet.Malformed},
		{name: "ipv6 udp header truncated", pkt: edit(udp6("hello"), func(p []byte) { put16(p, 4, 7) }), want: packet.Malformed},
		{name: "ipv6 extension header truncated", pkt: edit(udp6("hello"), func(p []byte) { p[6] = 60; put16(p, 4, 7) }), want: packet.Malformed},
		{name: "ipv6 extension header past payload", pkt: edit(packettest.WithHopByHop6(udp6("hello")), func(p []byte) { p[41] = 2 }), want: packet.Malformed},
		{name: "ipv6 hop-by-hop not first", pkt: withExts6(udp6("x"), 60, 0), want: packet.Malformed},
		{name: "ipv6 nine extension headers", pkt: withExts6(udp6("x"), 0, 60, 43, 60, 43, 60, 43, 60, 60), want: packet.Malformed},
		{name: "ipv6 fragment header truncated", pkt: edit(udp6("hello"), func(p []byte) { p[6] = 44; put16(p, 4, 4) }), want: packet.Malformed},

		// Fragments.
		{name: "ipv4 first fragment", pkt: frags4[0], want: packet.Fragment},
		{name: "ipv4 middle fragment", pkt: frags4[1], want: packet.Fragment},
		{name: "ipv4 last fragment", pkt: frags4[2], want: packet.Fragment},
		{name: "ipv4 fragment of non-udp", pkt: edit4(frags4[1], func(p []byte) { p[9] = 6 }), want: packet.Fragment},
		{name: "ipv6 first fragment", pkt: frags6[0], want: packet.Fragment},
		{name: "ipv6 last fragment", pkt: frags6[2], want: packet.Fragment},
		{name: "ipv6 fragment after hop-by-hop", pkt: edit(withExts6(udp6("hello"), 0, 44), func(p []byte) { p[48+3] = 1 }), want: packet.Fragment},

		// Not UDP.
		{name: "ipv4 tcp", pkt: edit4(udp4("x"), func(p []byte) { p[9] = 6 }), want: packet.NotUDP},
		{name: "ipv4 igmp", pkt: edit4(udp4("x"), func(p []byte) { p[9] = 2 }), want: packet.NotUDP},
		{name: "ipv4 ah", pkt: edit4(udp4("x"), func(p []byte) { p[9] = 51 }), want: packet.NotUDP},
		{name: "ipv6 icmpv6", pkt: edit(udp6("x"), func(p []byte) { p[6] = 58 }), want: packet.NotUDP},
		{name: "ipv6 mld behind hop-by-hop", pkt: edit(packettest.WithHopByHop6(udp6("x")), func(p []byte) { p[40] = 58 }), want: packet.NotUDP},
		{name: "ipv6 no next header", pkt: edit(udp6("x"), func(p []byte) { p[6] = 59 }), want: packet.NotUDP},
		{name: "ipv6 esp", pkt: edit(udp6("x"), func(p []byte) { p[6] = 50 }), want: packet.NotUDP},
		{name: "ipv6 ah", pkt: edit(udp6("x"), func(p []byte) { p[6] = 51 }), want: packet.NotUDP},
		{name: "ipv6 tcp after destination options", pkt: edit(withExts6(udp6("x"), 60), func(p []byte) { p[40] = 6 }), want: packet.NotUDP},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			var d packet.Datagram
			got := packet.Parse(tc.pkt, &d)
			if got != tc.want {
				t.Fatalf("Parse = %v, want %v", got, tc.want)
			}
			if got != packet.OK {
				return
			}
			if diff := cmp.Diff(tc.dg, d); diff != "" {
				t.Errorf("Datagram (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEtherType(t *testing.T) {
	tests := []struct {
		name      string
		etherType uint16
		pkt       []byte
		want      packet.Reason
	}{
		{name: "ipv4 on ETH_P_IP", etherType: packet.EtherTypeIPv4, pkt: udp4("x"), want: packet.OK},
		{name: "ipv6 on ETH_P_IPV6", etherType: packet.EtherTypeIPv6, pkt: udp6("x"), want: packet.OK},
		{name: "ipv6 on ETH_P_IP", etherType: packet.EtherTypeIPv4, pkt: udp6("x"), want: packet.Malformed},
		{name: "ipv4 on ETH_P_IPV6", etherType: packet.EtherTypeIPv6, pkt: udp4("x"), want: packet.Malformed},
		{name: "empty on ETH_P_IP", etherType: packet.EtherTypeIPv4, pkt: nil, want: packet.Malformed},
		{name: "arp", etherType: 0x0806, pkt: udp4("x"), want: packet.NotUDP},
		{name: "802.1Q tag", etherType: packet.EtherTypeVLAN, pkt: udp4("x"), want: packet.VLANTagged},
		{name: "802.1ad tag", etherType: packet.EtherTypeQinQ, pkt: udp4("x"), want: packet.VLANTagged},
		{name: "pre-standard QinQ tag", etherType: packet.EtherTypeQinQOld, pkt: udp6("x"), want: packet.VLANTagged},
		{name: "fragment on ETH_P_IP", etherType: packet.EtherTypeIPv4, pkt: packettest.Fragment(udp4("0123456789"), 8)[0], want: packet.Fragment},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d packet.Datagram
			if got := packet.ParseEtherType(tc.etherType, tc.pkt, &d); got != tc.want {
				t.Errorf("ParseEtherType(%#04x) = %v, want %v", tc.etherType, got, tc.want)
			}
		})
	}
}

func TestReasonString(t *testing.T) {
	got := []string{packet.OK.String(), packet.Malformed.String(), packet.Fragment.String(), packet.NotUDP.String(),
		packet.VLANTagged.String(), packet.Reason(9).String()}
	want := []string{"ok", "malformed", "fragment", "not UDP", "VLAN-tagged", "Reason(9)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Reason strings (-want +got):\n%s", diff)
	}
}

// TestParsePayloadBytes checks that the payload Parse locates is the bytes
// the sender put there, for both families and with extension headers.
func TestParsePayloadBytes(t *testing.T) {
	payload := []byte("market data tick 42")
	pkts := map[string][]byte{
		"ipv4":             packettest.BuildUDP4(src4, dst4, payload),
		"ipv4 options":     packettest.WithIPv4Options(packettest.BuildUDP4(src4, dst4, payload), []byte{1, 1, 1, 0}),
		"ipv6":             packettest.BuildUDP6(src6, dst6, payload),
		"ipv6 hop-by-hop":  packettest.WithHopByHop6(packettest.BuildUDP6(src6, dst6, payload)),
		"ipv6 ext headers": withExts6(packettest.BuildUDP6(src6, dst6, payload), 0, 60, 44),
	}
	for name, pkt := range pkts {
		var d packet.Datagram
		if r := packet.Parse(pkt, &d); r != packet.OK {
			t.Errorf("%s: Parse = %v, want ok", name, r)
			continue
		}
		if got := pkt[d.PayloadOff : d.PayloadOff+d.PayloadLen]; !bytes.Equal(got, payload) {
			t.Errorf("%s: payload %q, want %q", name, got, payload)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases() {
		f.Add(tc.pkt)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		var d packet.Datagram
		r := packet.Parse(buf, &d)
		if r != packet.OK {
			return
		}
		minOff := 28
		if d.V6 {
			minOff = 48
		}
		if d.PayloadOff < minOff || d.PayloadLen < 0 || d.PayloadOff+d.PayloadLen > len(buf) {
			t.Fatalf("payload [%d:+%d] outside %d-byte packet", d.PayloadOff, d.PayloadLen, len(buf))
		}
		if d.V6 != (buf[0]>>4 == 6) {
			t.Fatalf("V6 = %v for version nibble %d", d.V6, buf[0]>>4)
		}
		// Stable, and independent of what d held before.
		junk := packet.Datagram{Dst: [16]byte{1}, Src: [16]byte{2}, SrcPort: 3, DstPort: 4, PayloadOff: 5, PayloadLen: 6, V6: !d.V6}
		if r2 := packet.Parse(buf, &junk); r2 != r || junk != d {
			t.Fatalf("re-parse gave %v %+v, first %v %+v", r2, junk, r, d)
		}
		// Trailing link-layer padding changes nothing.
		var padded packet.Datagram
		if r3 := packet.Parse(append(bytes.Clone(buf), 0, 0, 0, 0), &padded); r3 != r || padded != d {
			t.Fatalf("with padding: %v %+v, without %v %+v", r3, padded, r, d)
		}
	})
}

func benchmarkParse(b *testing.B, pkt []byte) {
	var d packet.Datagram
	b.ReportAllocs()
	for b.Loop() {
		if packet.Parse(pkt, &d) != packet.OK {
			b.Fatal("not ok")
		}
	}
}

func BenchmarkParseIPv4(b *testing.B) {
	benchmarkParse(b, packettest.BuildUDP4(src4, dst4, make([]byte, 1316)))
}

func BenchmarkParseIPv6(b *testing.B) {
	benchmarkParse(b, packettest.BuildUDP6(src6, dst6, make([]byte, 1316)))
}

func BenchmarkParseIPv6HopByHop(b *testing.B) {
	benchmarkParse(b, packettest.WithHopByHop6(packettest.BuildUDP6(src6, dst6, make([]byte, 1316))))
}
