package ingressdrop

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// loadProgram loads the program with rules holding matches, for
// BPF_PROG_TEST_RUN (ebpf.Program.Run), which runs it on a frame as tc
// would: skb->protocol from the Ethernet header, the network header after
// it.
func loadProgram(t *testing.T, matches []Match) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	netnstest.RequireRoot(t)
	want, err := keys(matches)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := newRules(want)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rules.Close() })
	drops, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drops.Close() })
	prog, err := newProgram(rules, drops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, drops
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// ether prepends an Ethernet header with ethertype to p.
func ether(ethertype uint16, p []byte) []byte {
	f := make([]byte, 14, 14+len(p))
	copy(f[0:6], []byte{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:14], ethertype)
	return append(f, p...)
}

func ipv4(p []byte) []byte { return ether(0x0800, p) }
func ipv6(p []byte) []byte { return ether(0x86dd, p) }

// edit returns a copy of p changed by f.
func edit(p []byte, f func([]byte)) []byte {
	c := append([]byte(nil), p...)
	f(c)
	return c
}

func TestProgramVerdicts(t *testing.T) {
	prog, drops := loadProgram(t, []Match{
		{Group: netip.MustParseAddr("239.1.2.3"), Port: 5000},
		{Group: netip.MustParseAddr("232.1.1.1"), Port: 6000, Source: netip.MustParseAddr("10.0.0.9")},
		{Group: netip.MustParseAddr("10.0.0.50"), Port: 4000},
		{Group: netip.MustParseAddr("ff1e::1"), Port: 5000},
		{Group: netip.MustParseAddr("ff3e::8"), Port: 7000, Source: netip.MustParseAddr("fd00::9")},
	})
	payload := []byte("payload")
	v4 := packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("239.1.2.3:5000"), payload)
	v6 := packettest.BuildUDP6(ap("[fd00::1]:1234"), ap("[ff1e::1]:5000"), payload)
	// BPF_PROG_TEST_RUN refuses frames whose IP header is shorter than
	// the fixed one (EINVAL), so truncation is tested after it; the
	// program passes either kind the same way, when a load fails.
	for _, tc := range []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"ipv4 group and port", ipv4(v4), true},
		{"ipv4 other port", ipv4(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("239.1.2.3:5001"), payload)), false},
		{"ipv4 other group", ipv4(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("239.1.2.4:5000"), payload)), false},
		{"ipv4 port as source port", ipv4(packettest.BuildUDP4(ap("10.0.0.1:5000"), ap("239.1.2.3:1234"), payload)), false},
		{"ipv4 unicast input", ipv4(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("10.0.0.50:4000"), payload)), true},
		{"ipv4 rule's source", ipv4(packettest.BuildUDP4(ap("10.0.0.9:1234"), ap("232.1.1.1:6000"), payload)), true},
		{"ipv4 other source", ipv4(packettest.BuildUDP4(ap("10.0.0.8:1234"), ap("232.1.1.1:6000"), payload)), false},
		{"ipv4 with options", ipv4(packettest.WithIPv4Options(v4, []byte{1, 1, 1, 0})), true},
		{"ipv4 first fragment", ipv4(packettest.Fragment(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("239.1.2.3:5000"), make([]byte, 64)), 32)[0]), false},
		{"ipv4 last fragment", ipv4(packettest.Fragment(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap("239.1.2.3:5000"), make([]byte, 64)), 32)[2]), false},
		{"ipv4 DF set", ipv4(edit(v4, func(p []byte) { p[6] |= 0x40 })), true},
		{"ipv4 not UDP", ipv4(edit(v4, func(p []byte) { p[9] = 6 })), false},
		{"ipv4 IHL 4", ipv4(edit(v4, func(p []byte) { p[0] = 0x44 })), false},
		{"ipv4 version 6", ipv4(edit(v4, func(p []byte) { p[0] = 0x65 })), false},
		{"ipv4 UDP ports cut short", ipv4(v4[:23]), false},
		{"ipv4 UDP ports only", ipv4(v4[:24]), true},
		{"ipv4 options past the end", ipv4(edit(v4[:24], func(p []byte) { p[0] = 0x4f })), false},
		{"ipv6 group and port", ipv6(v6), true},
		{"ipv6 other port", ipv6(packettest.BuildUDP6(ap("[fd00::1]:1234"), ap("[ff1e::1]:5001"), payload)), false},
		{"ipv6 other group", ipv6(packettest.BuildUDP6(ap("[fd00::1]:1234"), ap("[ff1e::2]:5000"), payload)), false},
		{"ipv6 rule's source", ipv6(packettest.BuildUDP6(ap("[fd00::9]:1234"), ap("[ff3e::8]:7000"), payload)), true},
		{"ipv6 other source", ipv6(packettest.BuildUDP6(ap("[fd00::8]:1234"), ap("[ff3e::8]:7000"), payload)), false},
		{"ipv6 hop-by-hop header", ipv6(packettest.WithHopByHop6(v6)), false},
		{"ipv6 fragment", ipv6(packettest.Fragment(packettest.BuildUDP6(ap("[fd00::1]:1234"), ap("[ff1e::1]:5000"), make([]byte, 64)), 32)[0]), false},
		{"ipv6 not UDP", ipv6(edit(v6, func(p []byte) { p[6] = 6 })), false},
		{"ipv6 version 4", ipv6(edit(v6, func(p []byte) { p[0] = 0x40 })), false},
		{"ipv6 UDP ports cut short", ipv6(v6[:43]), false},
		{"ipv6 packet as ipv4", ipv4(v6), false},
		{"ARP", ether(0x0806, make([]byte, 28)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := dropCount(t, drops)
			ret, err := prog.Run(&ebpf.RunOptions{Data: tc.frame})
			if err != nil {
				t.Fatal(err)
			}
			want := int32(tcxNext)
			if tc.drop {
				want = tcxDrop
			}
			if got := int32(ret); got != want {
				t.Errorf("verdict %d, want %d (%d = drop, %d = pass)", got, want, tcxDrop, tcxNext)
			}
			var wantCount uint64
			if tc.drop {
				wantCount = 1
			}
			if got := dropCount(t, drops) - before; got != wantCount {
				t.Errorf("drop counter went up by %d, want %d", got, wantCount)
			}
		})
	}
}

func dropCount(t *testing.T, drops *ebpf.Map) uint64 {
	t.Helper()
	var perCPU []uint64
	if err := drops.Lookup(uint32(0), &perCPU); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n
}

func TestMatchKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Match
		want key
	}{
		{"ipv4 any source", Match{Group: netip.MustParseAddr("239.1.2.3"), Port: 5000},
			key{16 + 10: 0xff, 16 + 11: 0xff, 16 + 12: 239, 16 + 13: 1, 16 + 14: 2, 16 + 15: 3, 32: 0x13, 33: 0x88}},
		{"ipv4 source", Match{Group: netip.MustParseAddr("232.0.0.1"), Port: 1, Source: netip.MustParseAddr("10.0.0.9")},
			key{10: 0xff, 11: 0xff, 12: 10, 15: 9, 16 + 10: 0xff, 16 + 11: 0xff, 16 + 12: 232, 16 + 15: 1, 33: 1}},
		{"ipv6", Match{Group: netip.MustParseAddr("ff1e::1"), Port: 0xabcd, Source: netip.MustParseAddr("fd00::9")},
			key{0: 0xfd, 15: 9, 16: 0xff, 17: 0x1e, 31: 1, 32: 0xab, 33: 0xcd}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.m.key()); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkProgram measures what the program costs per packet, as the
// kernel times it (BPF_PROG_TEST_RUN with Repeat): a relayed datagram
// that is dropped, one of another group that passes after both lookups,
// and, as the harness's own share, a program that only returns.
func BenchmarkProgram(b *testing.B) {
	netnstest.RequireRoot(b)
	want, err := keys([]Match{{Group: netip.MustParseAddr("239.1.2.3"), Port: 5000}})
	if err != nil {
		b.Fatal(err)
	}
	rules, err := newRules(want)
	if err != nil {
		b.Fatal(err)
	}
	defer rules.Close()
	drops, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer drops.Close()
	prog, err := newProgram(rules, drops)
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, tcxNext), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	payload := make([]byte, 1316)
	for _, bc := range []struct {
		name string
		prog *ebpf.Program
		dst  string
	}{{"dropped", prog, "239.1.2.3:5000"}, {"passed", prog, "239.1.2.4:5000"}, {"empty program", empty, "239.1.2.3:5000"}} {
		b.Run(bc.name, func(b *testing.B) {
			frame := ipv4(packettest.BuildUDP4(ap("10.0.0.1:1234"), ap(bc.dst), payload))
			var perRun time.Duration
			for b.Loop() {
				if _, perRun, err = bc.prog.Benchmark(frame, 100000, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(perRun.Nanoseconds()), "ns/packet")
		})
	}
}
