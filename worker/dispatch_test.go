package worker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// recordSender completes every send at once and remembers the datagrams:
// the headers of a transparent output's, then the payload.
type recordSender struct {
	d    *dispatcher
	sent map[string][][]byte // destination → datagrams
}

func (s *recordSender) send(o *output, buf int, pkt []byte, off, n int, hdr []byte) {
	if s.sent != nil {
		s.sent[o.dest] = append(s.sent[o.dest], append(bytes.Clone(hdr), pkt[off:off+n]...))
	}
	s.d.sent(o, n)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// vnetFrame returns ip as an input socket receives it: after a virtio_net_hdr
// of the given GSO type and size and link bytes of link-layer header, which
// end with the EtherType of ip's version.
func vnetFrame(gsoType uint8, gsoSize uint16, link int, ip []byte) []byte {
	f := make([]byte, vnetHdrLen+link, vnetHdrLen+link+len(ip))
	f[1] = gsoType
	binary.LittleEndian.PutUint16(f[4:], gsoSize)
	for i := range link {
		f[vnetHdrLen+i] = 0xee
	}
	if link >= 2 && len(ip) > 0 {
		etherType := uint16(packet.EtherTypeIPv4)
		if ip[0]>>4 == 6 {
			etherType = packet.EtherTypeIPv6
		}
		binary.BigEndian.PutUint16(f[vnetHdrLen+link-2:], etherType)
	}
	return append(f, ip...)
}

// plain returns ip as received without GSO and without a link header.
func plain(ip []byte) []byte { return vnetFrame(vnetGSONone, 0, 0, ip) }

// seq returns n bytes counting up from base, so that cut points show.
func seq(n int, base byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = base + byte(i)
	}
	return b
}

func TestForward(t *testing.T) {
	payload := []byte("market data \x00\x01\x02")
	v4 := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), payload)
	v6 := packettest.BuildUDP6(ap("[fd00::9]:4000"), ap("[ff3e::1]:5001"), payload)
	frag := packettest.Fragment(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), make([]byte, 100)), 48)[0]
	notUDP := bytes.Clone(v4)
	notUDP[9] = 6 // TCP
	packettest.SetIPv4Checksum(notUDP)
	badIHL := bytes.Clone(v4)
	badIHL[0] = 0x44
	lying := bytes.Clone(v4)
	lying[3] += 40 // total length past the end
	packettest.SetIPv4Checksum(lying)
	aggPayload := seq(250, 0)
	agg4 := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), aggPayload)
	agg6 := packettest.BuildUDP6(ap("[fd00::9]:4000"), ap("[ff3e::1]:5001"), aggPayload)
	v4empty := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), nil)
	// Checksums: v4 and v6 have right ones (packettest); these wrong or
	// zero ones. The UDP checksum is at 26 in v4 and 46 in v6.
	withSum := func(p []byte, off int, sum uint16) []byte {
		q := bytes.Clone(p)
		binary.BigEndian.PutUint16(q[off:], sum)
		return q
	}
	bad4 := withSum(v4, 26, binary.BigEndian.Uint16(v4[26:])^0x0100)
	bad6 := withSum(v6, 46, binary.BigEndian.Uint16(v6[46:])^0x0001)
	zero4, zero6 := withSum(v4, 26, 0), withSum(v6, 46, 0)
	// A sender's GSO aggregate: its checksum field holds the partial sum
	// offload completes per segment, not the checksum of the whole.
	partialAgg4 := withSum(agg4, 26, 0x1234)

	tests := []struct {
		name      string
		ifindex   int32
		pkt       []byte // the IP packet
		gsoType   uint8  // virtio_net_hdr gso_type and gso_size
		gsoSize   uint16
		link      int    // bytes of link-layer header before pkt
		etherType uint16 // ending the link-layer header; 0: pkt's IP version's
		vnetFlags uint8  // virtio_net_hdr flags
		meta      rxMeta // what the receive ring says
		raw       bool   // pkt is the whole frame, without a virtio_net_hdr added
		n         int    // reported length; 0 means the frame's length
		want      stats.WorkerCounters
		wantSent  map[string][][]byte
	}{
		{
			name: "IPv4 any-source rule, two outputs", ifindex: 2, pkt: v4,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"239.2.2.2:6000@if3": {payload}, "[ff3e::2]:6000@if4": {payload}},
		},
		{
			name: "IPv6", ifindex: 2, pkt: v6,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"10.1.0.50:7000@if3": {payload}},
		},
		{
			name: "source-specific rule wins over any-source", ifindex: 5, pkt: v4,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"239.9.9.9:9000@if3": {payload}},
		},
		{
			name: "other ifindex does not match", ifindex: 9, pkt: v4,
			want: stats.WorkerCounters{RxPackets: 1, NoMatch: 1},
		},
		{
			name: "fragment", ifindex: 2, pkt: frag,
			want: stats.WorkerCounters{RxPackets: 1, Fragments: 1},
		},
		{
			name: "not UDP", ifindex: 2, pkt: notUDP,
			want: stats.WorkerCounters{RxPackets: 1, NotUDP: 1},
		},
		{
			name: "bad IHL", ifindex: 2, pkt: badIHL,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "lying total length", ifindex: 2, pkt: lying,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "truncated by the buffer (MSG_TRUNC length)", ifindex: 2, pkt: v4, n: len(v4) + 1,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "empty", ifindex: 2, pkt: []byte{},
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "shorter than the virtio_net_hdr", ifindex: 2, pkt: make([]byte, vnetHdrLen-1), raw: true,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "shorter than the link header", ifindex: 2, pkt: []byte{}, link: 14, n: vnetHdrLen + 13,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "after an Ethernet header", ifindex: 2, pkt: v6, link: 14,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"10.1.0.50:7000@if3": {payload}},
		},
		{
			name: "UDP GSO aggregate, last datagram shorter", ifindex: 2, pkt: agg4, gsoType: vnetGSOUDPL4, gsoSize: 100, link: 14,
			want: stats.WorkerCounters{RxPackets: 3},
			wantSent: map[string][][]byte{
				"239.2.2.2:6000@if3": {aggPayload[:100], aggPayload[100:200], aggPayload[200:]},
				"[ff3e::2]:6000@if4": {aggPayload[:100], aggPayload[100:200], aggPayload[200:]},
			},
		},
		{
			name: "IPv6 UDP GSO aggregate of equal datagrams, ECN flag set", ifindex: 2, pkt: agg6, gsoType: vnetGSOUDPL4 | vnetGSOECN, gsoSize: 125,
			want:     stats.WorkerCounters{RxPackets: 2},
			wantSent: map[string][][]byte{"10.1.0.50:7000@if3": {aggPayload[:125], aggPayload[125:]}},
		},
		{
			name: "UDP GSO aggregate of one datagram", ifindex: 2, pkt: agg4, gsoType: vnetGSOUDPL4, gsoSize: 1400,
			want: stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{
				"239.2.2.2:6000@if3": {aggPayload},
				"[ff3e::2]:6000@if4": {aggPayload},
			},
		},
		{
			name: "UDP GSO aggregate matching no rule counts every datagram", ifindex: 9, pkt: agg4, gsoType: vnetGSOUDPL4, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 3, NoMatch: 3},
		},
		{
			name: "UDP GSO aggregate with gso_size 0", ifindex: 2, pkt: agg4, gsoType: vnetGSOUDPL4,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "empty UDP GSO aggregate", ifindex: 2, pkt: v4empty, gsoType: vnetGSOUDPL4, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "UFO packet is one datagram", ifindex: 2, pkt: agg4, gsoType: vnetGSOUDP, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{
				"239.2.2.2:6000@if3": {aggPayload},
				"[ff3e::2]:6000@if4": {aggPayload},
			},
		},
		{
			name: "TCP GSO type on a UDP packet", ifindex: 2, pkt: agg4, gsoType: 1, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "TCP GSO aggregate", ifindex: 2, pkt: notUDP, gsoType: 1, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 1, NotUDP: 1},
		},
		{
			name: "VLAN tag in metadata (ring)", ifindex: 2, pkt: v4, link: 14, meta: rxTagged,
			want: stats.WorkerCounters{RxPackets: 1, VLANTagged: 1},
		},
		{
			name: "802.1Q tag in the frame", ifindex: 2, pkt: v4, link: 14, etherType: packet.EtherTypeVLAN,
			want: stats.WorkerCounters{RxPackets: 1, VLANTagged: 1},
		},
		{
			name: "802.1ad tag in the frame", ifindex: 2, pkt: v6, link: 14, etherType: packet.EtherTypeQinQ,
			want: stats.WorkerCounters{RxPackets: 1, VLANTagged: 1},
		},
		{
			name: "ARP frame", ifindex: 2, pkt: v4, link: 14, etherType: 0x0806,
			want: stats.WorkerCounters{RxPackets: 1, NotUDP: 1},
		},
		{
			name: "IPv6 packet in an IPv4 frame", ifindex: 2, pkt: v6, link: 14, etherType: packet.EtherTypeIPv4,
			want: stats.WorkerCounters{RxPackets: 1, Malformed: 1},
		},
		{
			name: "IPv4 bad UDP checksum", ifindex: 2, pkt: bad4, link: 14,
			want: stats.WorkerCounters{RxPackets: 1, BadChecksum: 1},
		},
		{
			name: "IPv6 bad UDP checksum", ifindex: 2, pkt: bad6,
			want: stats.WorkerCounters{RxPackets: 1, BadChecksum: 1},
		},
		{
			name: "bad UDP checksum matching no rule is not verified", ifindex: 9, pkt: bad4,
			want: stats.WorkerCounters{RxPackets: 1, NoMatch: 1},
		},
		{
			name: "IPv4 zero UDP checksum: none computed", ifindex: 2, pkt: zero4,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"239.2.2.2:6000@if3": {payload}, "[ff3e::2]:6000@if4": {payload}},
		},
		{
			name: "IPv6 zero UDP checksum is invalid", ifindex: 2, pkt: zero6,
			want: stats.WorkerCounters{RxPackets: 1, BadChecksum: 1},
		},
		{
			name: "partial checksum (NEEDS_CSUM) is not verified", ifindex: 2, pkt: bad4, vnetFlags: vnetFNeedsCsum,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"239.2.2.2:6000@if3": {payload}, "[ff3e::2]:6000@if4": {payload}},
		},
		{
			name: "checksum the NIC verified (DATA_VALID) is not verified again", ifindex: 2, pkt: bad6, vnetFlags: vnetFDataValid,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"10.1.0.50:7000@if3": {payload}},
		},
		{
			name: "ring says checksum valid", ifindex: 2, pkt: bad4, meta: rxCsumValid,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"239.2.2.2:6000@if3": {payload}, "[ff3e::2]:6000@if4": {payload}},
		},
		{
			name: "ring says checksum not ready", ifindex: 2, pkt: zero6, meta: rxCsumPartial,
			want:     stats.WorkerCounters{RxPackets: 1},
			wantSent: map[string][][]byte{"10.1.0.50:7000@if3": {payload}},
		},
		{
			name: "partial UDP GSO aggregate", ifindex: 2, pkt: partialAgg4, gsoType: vnetGSOUDPL4, gsoSize: 100, vnetFlags: vnetFNeedsCsum,
			want: stats.WorkerCounters{RxPackets: 3},
			wantSent: map[string][][]byte{
				"239.2.2.2:6000@if3": {aggPayload[:100], aggPayload[100:200], aggPayload[200:]},
				"[ff3e::2]:6000@if4": {aggPayload[:100], aggPayload[100:200], aggPayload[200:]},
			},
		},
		{
			name: "UDP GSO aggregate neither partial nor valid counts every datagram", ifindex: 2, pkt: partialAgg4, gsoType: vnetGSOUDPL4, gsoSize: 100,
			want: stats.WorkerCounters{RxPackets: 3, BadChecksum: 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testRules(t,
				wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "[ff3e::2]:6000@4"),
				wrule("b", 2, "[ff3e::1]:5001", "10.1.0.50:7000@3"),
				wrule("c", 5, "239.1.1.1:5001", "239.8.8.8:8000@3"),
				wrule("d", 5, "239.1.1.1:5001 from 10.0.0.9", "239.9.9.9:9000@3"),
			)
			s := &recordSender{d: d, sent: map[string][][]byte{}}
			pkt := tc.pkt
			if !tc.raw {
				pkt = vnetFrame(tc.gsoType, tc.gsoSize, tc.link, tc.pkt)
				pkt[0] = tc.vnetFlags
				if tc.etherType != 0 {
					binary.BigEndian.PutUint16(pkt[vnetHdrLen+tc.link-2:], tc.etherType)
				}
			}
			n := tc.n
			if n == 0 {
				n = len(pkt)
			}
			d.forward(tc.ifindex, tc.link, pkt, n, 0, tc.meta, s)
			if diff := cmp.Diff(tc.want, d.c); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if tc.wantSent == nil {
				tc.wantSent = map[string][][]byte{}
			}
			if diff := cmp.Diff(tc.wantSent, s.sent); diff != "" {
				t.Errorf("sent payloads (-want +got):\n%s", diff)
			}
		})
	}
}

// testRules returns a dispatcher over rules installed in a fake-socket
// database.
func testRules(t testing.TB, rules ...controlproto.WorkerRule) *dispatcher {
	t.Helper()
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	for _, r := range rules {
		db.add(r)
	}
	db.commit()
	return &dispatcher{db: db}
}

func TestForwardCountsRuleAndOutputs(t *testing.T) {
	f := newFakeSockets()
	f.failOut = map[string]error{"IPv4 socket from port 5001 on ifindex 3": errFake}
	db := newRuleDB(f, testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.3.3.3:6000@3 port 5001", "239.4.4.4:6000@0"))
	db.commit()
	d := &dispatcher{db: db}
	s := &recordSender{d: d}
	payload := make([]byte, 1000)
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), payload))
	for range 3 {
		d.forward(2, 0, pkt, len(pkt), 0, 0, s)
	}

	r := db.byID["a"]
	got := r.counters(r.errorText())
	want := stats.RuleCounters{
		ID: "a", PacketsIn: 3, BytesIn: 3000,
		Outputs: []stats.OutputCounters{
			{PacketsOut: 3, BytesOut: 3000},
			{Errors: 3},
			{Errors: 3},
		},
		Error:        "outputs[1] 239.3.3.3:6000@if3: fake failure; outputs[2] 239.4.4.4:6000@if0: interface if0 does not exist",
		OutputErrors: []string{"", "fake failure", "interface if0 does not exist"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rule counters (-want +got):\n%s", diff)
	}
	if d.c.EgressErrors != 6 {
		t.Errorf("EgressErrors = %d, want 6", d.c.EgressErrors)
	}
	if o := &r.outputs[1]; o.lastErrno != 0 {
		t.Errorf("lastErrno of an output without socket = %v, want 0", o.lastErrno)
	}
}

// TestForwardDropsLoops: a datagram whose source is one of the worker's
// egress identities (the port of an output's socket with the output's
// source, or an address of its interface) is the relay's own output come
// back, counted as a loop and not relayed; any other source is relayed.
func TestForwardDropsLoops(t *testing.T) {
	// The fake sockets' source port is 40000 + fd: 40100 for the first.
	d := testRules(t,
		wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3 addrs 10.3.0.1,10.3.0.5", "239.2.2.3:6000@4 from 10.4.0.9"),
		wrule("t", 2, "239.1.1.2:5001", "239.2.2.4:6000@3 transparent"))
	s := &recordSender{d: d, sent: map[string][][]byte{}}
	payload := []byte("x")
	for _, tc := range []struct {
		src, dst string
		loop     bool
	}{
		{"10.3.0.1:40100", "239.1.1.1:5001", true},
		{"10.3.0.5:40100", "239.1.1.1:5001", true},
		{"10.4.0.9:40101", "239.1.1.1:5001", true},
		{"10.3.0.1:40101", "239.1.1.1:5001", false}, // another identity's port with another's address
		{"10.3.0.2:40100", "239.1.1.1:5001", false},
		{"10.9.9.9:4000", "239.1.1.1:5001", false},
		{"10.3.0.1:40100", "239.1.1.2:5001", true}, // any rule: the source is what counts
	} {
		before, sends := d.c.Loops, len(s.sent["239.2.2.2:6000@if3"])+len(s.sent["239.2.2.4:6000@if3"])
		pkt := plain(packettest.BuildUDP4(ap(tc.src), ap(tc.dst), payload))
		d.forward(2, 0, pkt, len(pkt), 0, 0, s)
		after := len(s.sent["239.2.2.2:6000@if3"]) + len(s.sent["239.2.2.4:6000@if3"])
		if loop := d.c.Loops > before; loop != tc.loop || loop == (after > sends) {
			t.Errorf("from %s to %s: loops %d→%d, sends %d→%d; want a loop: %v", tc.src, tc.dst, before, d.c.Loops, sends, after, tc.loop)
		}
	}
}

func TestForwardDoesNotAllocate(t *testing.T) {
	d, pkt := benchSetup(t, 1024)
	s := &recordSender{d: d}
	allocs := testing.AllocsPerRun(1000, func() { d.forward(2, 0, pkt, len(pkt), 0, 0, s) })
	if allocs != 0 {
		t.Fatalf("forward allocates %v times per packet, want 0", allocs)
	}
}

// benchSetup installs 1,000 rules on one interface, each with two outputs,
// and returns a packet matching one of them that carries size bytes of
// payload.
func benchSetup(t testing.TB, size int) (*dispatcher, []byte) {
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	for i := range 1000 {
		in := netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)})
		db.add(wrule(in.String(), 2, in.String()+":5001", "239.2.2.2:6000@3", "239.2.2.3:6000@3"))
	}
	db.commit()
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.200:5001"), seqPayload(size)))
	return &dispatcher{db: db}, pkt
}

// seqPayload returns n bytes that are not all zero, so that a checksum
// over them does real work.
func seqPayload(n int) []byte { return seq(n, 0x5a) }

// benchSizes are the UDP payload sizes the dispatch benchmarks run: a
// small market-data message and a typical media datagram.
var benchSizes = []int{64, 1024}

// BenchmarkDispatch measures the per-packet work shared by both backends:
// parse, rule lookup among 1,000 rules, and dispatch to two outputs, with
// the UDP checksum verified (csum=verify) or marked valid by the NIC
// (csum=valid: VIRTIO_NET_HDR_F_DATA_VALID). cpu-ns/op is the benchmark
// thread's CPU time (see BenchmarkForwardBlock).
func BenchmarkDispatch(b *testing.B) {
	for _, size := range benchSizes {
		for _, csum := range []string{"verify", "valid"} {
			b.Run(fmt.Sprintf("payload=%d/csum=%s", size, csum), func(b *testing.B) {
				d, pkt := benchSetup(b, size)
				if csum == "valid" {
					pkt[0] = vnetFDataValid
				}
				s := &recordSender{d: d}
				b.ReportAllocs()
				b.SetBytes(int64(len(pkt)))
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu := threadCPU()
				for b.Loop() {
					d.forward(2, 0, pkt, len(pkt), 0, 0, s)
				}
				cpu = threadCPU() - cpu
				if d.c.RxPackets == 0 || d.c.NoMatch != 0 || d.c.BadChecksum != 0 {
					b.Fatalf("counters %+v: the packet did not match", d.c)
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func TestForwardGSOAggregateDoesNotAllocate(t *testing.T) {
	d, _ := benchSetup(t, 1024)
	s := &recordSender{d: d}
	pkt := vnetFrame(vnetGSOUDPL4, 1000, 14, packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.200:5001"), make([]byte, 20000)))
	allocs := testing.AllocsPerRun(1000, func() { d.forward(2, 14, pkt, len(pkt), 0, 0, s) })
	if allocs != 0 {
		t.Fatalf("forward allocates %v times per aggregate, want 0", allocs)
	}
	if d.c.RxPackets%20 != 0 || d.c.NoMatch != 0 {
		t.Fatalf("counters %+v: want 20 matched datagrams per aggregate", d.c)
	}
}

// BenchmarkDispatchLoopCheck is BenchmarkDispatch's 1,024-byte case (the
// checksum marked valid) with identities for the loop check to look at:
// none, those of 2,000 outputs (one socket, two addresses; the packet's
// source port is none of them), and a packet whose source port is theirs
// though its address is not (the worst case: the port bit is set, the map
// misses).
func BenchmarkDispatchLoopCheck(b *testing.B) {
	for _, bc := range []struct {
		name    string
		addrs   string // of the outputs' interface
		srcPort uint16
	}{
		{"no identities", "", 4000},
		{"identities of 2000 outputs", " addrs 10.3.0.1,10.3.0.2", 4000},
		{"source port of an identity", " addrs 10.3.0.1,10.3.0.2", 40100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := newRuleDB(newFakeSockets(), testLogger(nil))
			for i := range 1000 {
				in := netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)})
				db.add(wrule(in.String(), 2, in.String()+":5001", "239.2.2.2:6000@3"+bc.addrs, "239.2.2.3:6000@3"+bc.addrs))
			}
			db.commit()
			src := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.9"), bc.srcPort)
			pkt := plain(packettest.BuildUDP4(src, ap("239.1.1.200:5001"), seqPayload(1024)))
			pkt[0] = vnetFDataValid
			d := &dispatcher{db: db}
			s := &recordSender{d: d}
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				d.forward(2, 0, pkt, len(pkt), 0, 0, s)
			}
			if d.c.RxPackets == 0 || d.c.NoMatch != 0 || d.c.Loops != 0 {
				b.Fatalf("counters %+v: the packet did not match, or was taken for a loop", d.c)
			}
		})
	}
}

// FuzzForward feeds the dispatcher arbitrary frames: whatever the
// virtio_net_hdr and the packet say, it must not panic, every send must
// lie within the received bytes, and every datagram counted in rx_packets
// must be counted once more as dropped or taken by a rule.
func FuzzForward(f *testing.F) {
	ip := packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), seq(250, 0))
	f.Add(plain(ip), 0, uint8(0))
	f.Add(vnetFrame(vnetGSOUDPL4, 100, 14, ip), 14, uint8(rxCsumPartial))
	f.Add(vnetFrame(vnetGSOUDPL4, 1, 0, ip), 0, uint8(0))
	f.Add(vnetFrame(vnetGSOUDP, 100, 0, packettest.BuildUDP6(ap("[fd00::9]:4000"), ap("[ff3e::1]:5001"), seq(90, 1))), 0, uint8(0))
	f.Add(vnetFrame(vnetGSONone, 0, 14, ip), 14, uint8(rxTagged))
	f.Fuzz(func(t *testing.T, pkt []byte, link int, meta uint8) {
		if link < 0 || link > 64 {
			return
		}
		d := testRules(t, wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"), wrule("b", 2, "[ff3e::1]:5001", "10.1.0.50:7000@3"))
		s := &boundsSender{t: t, d: d, n: len(pkt)}
		d.forward(2, link, pkt, len(pkt), 0, rxMeta(meta)&(rxCsumPartial|rxCsumValid|rxTagged), s)
		var in uint64
		for _, r := range d.db.byIndex {
			in += r.packetsIn
		}
		c := d.c
		if dropped := c.Malformed + c.Fragments + c.NotUDP + c.VLANTagged + c.NoMatch + c.BadChecksum + c.Loops; dropped+in != c.RxPackets {
			t.Fatalf("rx_packets %d, but %d dropped and %d taken by rules", c.RxPackets, dropped, in)
		}
	})
}

// boundsSender fails the test for a send outside the n received bytes.
type boundsSender struct {
	t *testing.T
	d *dispatcher
	n int
}

func (s *boundsSender) send(o *output, buf int, pkt []byte, off, n int, hdr []byte) {
	if off < 0 || n < 0 || off+n > s.n {
		s.t.Fatalf("send of %d bytes at %d from a %d-byte frame", n, off, s.n)
	}
	s.d.sent(o, n)
}

// TestForwardSkipsIdleOutputs: an idle output (when_joined without
// listeners) sends nothing and counts no error, not even when it has no
// socket, only a datagram not sent; the rule's other outputs send as
// before, and the output sends again once the rule comes back without
// the idle flag.
func TestForwardSkipsIdleOutputs(t *testing.T) {
	f := newFakeSockets()
	db := newRuleDB(f, testLogger(nil))
	wr := wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.3.3.3:6000@3", "239.4.4.4:6000@0")
	wr.OutputIdle = []bool{false, true, true}
	db.add(wr)
	db.commit()
	d := &dispatcher{db: db}
	s := &recordSender{d: d}
	pkt := plain(packettest.BuildUDP4(ap("10.0.0.9:4000"), ap("239.1.1.1:5001"), make([]byte, 100)))
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)
	wr.OutputIdle = nil
	db.add(wr)
	db.commit()
	d.forward(2, 0, pkt, len(pkt), 0, 0, s)

	r := db.byID["a"]
	got := r.counters(r.errorText()).Outputs
	want := []stats.OutputCounters{{PacketsOut: 2, BytesOut: 200}, {PacketsOut: 1, BytesOut: 100, NotSentIdle: 1},
		{Errors: 1, NotSentIdle: 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output counters (-want +got):\n%s", diff)
	}
}
