package worker

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// withHops returns a copy of the IP packet p with its TTL or hop limit set
// to hops (and the IPv4 header checksum fixed).
func withHops(p []byte, hops byte) []byte {
	p = bytes.Clone(p)
	if p[0]>>4 == 6 {
		p[7] = hops
		return p
	}
	p[8] = hops
	packettest.SetIPv4Checksum(p)
	return p
}

// TestTransparentHeaders relays datagrams to transparent outputs through
// the dispatcher and compares what it would send (headers, then payload)
// with the packet a router would forward: the sender's source, the
// output's destination, one hop less, checksums computed from scratch by
// packettest.
func TestTransparentHeaders(t *testing.T) {
	payload := []byte("transparent market data \x00\x01\x02\x03")
	in4 := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), payload)
	out4 := withHops(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.2.2.2:6000"), payload), 63)
	in6 := packettest.BuildUDP6(ap("[fd00::9]:4000"), ap("[ff3e::1]:5001"), payload)
	out6 := withHops(packettest.BuildUDP6(ap("[fd00::9]:4000"), ap("[ff3e::2]:6000"), payload), 63)

	// A checksum left to offload holds the pseudo-header sum only.
	partial4 := bytes.Clone(in4)
	binary.BigEndian.PutUint16(partial4[26:], 0x1234)
	noCsum4 := bytes.Clone(in4)
	binary.BigEndian.PutUint16(noCsum4[26:], 0)
	noCsumOut4 := bytes.Clone(out4)
	binary.BigEndian.PutUint16(noCsumOut4[26:], 0)
	// Type of service, identification and don't fragment are kept.
	marked4 := bytes.Clone(in4)
	marked4[1], marked4[4], marked4[5], marked4[6] = 0xb8, 0x12, 0x34, 0x40
	packettest.SetIPv4Checksum(marked4)
	markedOut4 := bytes.Clone(out4)
	markedOut4[1], markedOut4[4], markedOut4[5], markedOut4[6] = 0xb8, 0x12, 0x34, 0x40
	packettest.SetIPv4Checksum(markedOut4)
	// Traffic class and flow label too.
	flow6, flowOut6 := bytes.Clone(in6), bytes.Clone(out6)
	copy(flow6[0:4], []byte{0x6b, 0x81, 0x23, 0x45})
	copy(flowOut6[0:4], []byte{0x6b, 0x81, 0x23, 0x45})

	agg := seq(250, 7)
	agg4 := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), agg)
	var aggOut4 [][]byte
	for i, seg := range [][]byte{agg[:100], agg[100:200], agg[200:]} {
		p := withHops(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.2.2.2:6000"), seg), 63)
		p[5] = byte(i) // the kernel's segmentation numbers them on
		packettest.SetIPv4Checksum(p)
		aggOut4 = append(aggOut4, p)
	}

	tests := []struct {
		name     string
		pkt      []byte
		flags    uint8 // virtio_net_hdr flags
		gsoType  uint8
		gsoSize  uint16
		out      string // output of the rule: with a ttl cap, or not
		want     [][]byte
		wantDrop stats.WorkerCounters
	}{
		{name: "IPv4, checksum derived from the received one", pkt: in4, want: [][]byte{out4}},
		{name: "IPv4, checksum left to offload", pkt: partial4, flags: vnetFNeedsCsum, want: [][]byte{out4}},
		{name: "IPv4 without checksum", pkt: noCsum4, want: [][]byte{noCsumOut4}},
		{name: "IPv4 type of service, identification, don't fragment", pkt: marked4, want: [][]byte{markedOut4}},
		{name: "IPv6, checksum derived from the received one", pkt: in6, want: [][]byte{out6}},
		{name: "IPv6, checksum left to offload", pkt: func() []byte {
			p := bytes.Clone(in6)
			binary.BigEndian.PutUint16(p[46:], 0x4321)
			return p
		}(), flags: vnetFNeedsCsum, want: [][]byte{out6}},
		{name: "IPv6 traffic class and flow label", pkt: flow6, want: [][]byte{flowOut6}},
		{name: "IPv4 GSO aggregate: each datagram its checksum and identification", pkt: agg4,
			flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 100, want: aggOut4},
		{name: "TTL capped by the output", pkt: in4, out: " ttl 9", want: [][]byte{withHops(out4, 9)}},
		{name: "a cap above the input's TTL", pkt: in4, out: " ttl 200", want: [][]byte{out4}},
		{name: "TTL 2 leaves with 1", pkt: withHops(in4, 2), want: [][]byte{withHops(out4, 1)}},
		{name: "TTL 1 is dropped", pkt: withHops(in4, 1), wantDrop: stats.WorkerCounters{TTLExpired: 1}},
		{name: "hop limit 0 is dropped", pkt: withHops(in6, 0), wantDrop: stats.WorkerCounters{TTLExpired: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testRules(t,
				wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3 transparent"+tc.out),
				wrule("b", 2, "[ff3e::1]:5001", "[ff3e::2]:6000@3 transparent"+tc.out))
			s := &recordSender{d: d, sent: map[string][][]byte{}}
			pkt := vnetFrame(tc.gsoType, tc.gsoSize, 0, tc.pkt)
			pkt[0] = tc.flags
			d.forward(2, 0, pkt, len(pkt), 0, 0, s)
			var got [][]byte
			for _, dgs := range s.sent {
				got = append(got, dgs...)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("datagrams sent (-want +got):\n%s", diff)
			}
			if d.c.TTLExpired != tc.wantDrop.TTLExpired {
				t.Errorf("ttl_expired %d, want %d", d.c.TTLExpired, tc.wantDrop.TTLExpired)
			}
		})
	}
}

// BenchmarkTransparentHeader measures the headers of one transparent
// send of a 1,024-byte payload: with the checksum derived from the
// received one, and computed over the payload.
func BenchmarkTransparentHeader(b *testing.B) {
	for _, bc := range []struct {
		name    string
		partial bool
	}{{"derived checksum", false}, {"computed checksum", true}} {
		b.Run(bc.name, func(b *testing.B) {
			d := testRules(b, wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3 transparent"))
			p := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), make([]byte, 1024))
			pkt := plain(p)
			o := &d.db.byID["a"].outputs[0]
			if packet.Parse(pkt[vnetHdrLen:], &d.dg) != packet.OK {
				b.Fatal("the packet does not parse")
			}
			d.org.read(pkt[vnetHdrLen:], &d.dg, bc.partial)
			payload := pkt[vnetHdrLen+28:]
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := d.org.header(&d.hdr, 0, o.d, 0, payload); !ok {
					b.Fatal("TTL expired")
				}
			}
		})
	}
}
