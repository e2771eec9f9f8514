package prefilter_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/internal/prefilter"
	"github.com/mcrelay/mcr/worker/packet/packettest"
	"golang.org/x/net/bpf"
)

var (
	src4 = netip.MustParseAddrPort("10.0.0.9:40000")
	src6 = netip.MustParseAddrPort("[fd00::9]:40000")
)

// vm loads a built program into x/net/bpf's interpreter.
func vm(t testing.TB, raw []bpf.RawInstruction) *bpf.VM {
	t.Helper()
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble")
	}
	v, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("program rejected by the VM: %v", err)
	}
	return v
}

// accepts runs the program over pkt and reports whether it kept the packet.
func accepts(t testing.TB, v *bpf.VM, pkt []byte) bool {
	t.Helper()
	n, err := v.Run(pkt)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	switch n {
	case 0:
		return false
	case prefilter.SnapLen:
		return true
	}
	t.Fatalf("program returned %d, want 0 or SnapLen", n)
	return false
}

func match(addrPort string) prefilter.Match {
	ap := netip.MustParseAddrPort(addrPort)
	return prefilter.Match{Dst: ap.Addr(), Port: ap.Port()}
}

func udp(dst string) []byte {
	d := netip.MustParseAddrPort(dst)
	if d.Addr().Is4() {
		return packettest.BuildUDP4(src4, d, []byte("payload"))
	}
	return packettest.BuildUDP6(src6, d, []byte("payload"))
}

// edit returns a copy of p changed by fn; IPv4 header checksums are fixed.
func edit(p []byte, fn func(p []byte)) []byte {
	q := bytes.Clone(p)
	fn(q)
	if q[0]>>4 == 4 {
		packettest.SetIPv4Checksum(q)
	}
	return q
}

// withExt6 inserts an 8-byte extension header of type proto after the fixed
// header of the IPv6 packet p.
func withExt6(p []byte, proto byte) []byte {
	q := append(append(append([]byte(nil), p[:40]...), p[6], 0, 1, 4, 0, 0, 0, 0), p[40:]...)
	q[6] = proto
	q[5] += 8 // payload length; small test packets, no carry
	return q
}

func TestBuildAcceptsExactly(t *testing.T) {
	matches := []prefilter.Match{
		match("239.1.1.1:5000"), match("239.1.1.1:5002"), match("239.1.1.2:6000"),
		match("[ff3e::1:1]:5000"), match("[ff3e::1:2]:7000"),
	}
	prog, err := prefilter.Build(matches)
	if err != nil {
		t.Fatal(err)
	}
	if !prog.Exact {
		t.Errorf("Exact = false for a 5-pair set")
	}
	v := vm(t, prog.Instructions)
	frags4 := packettest.Fragment(packettest.BuildUDP4(src4, netip.MustParseAddrPort("239.1.1.1:5000"), make([]byte, 100)), 48)
	frags6 := packettest.Fragment(packettest.BuildUDP6(src6, netip.MustParseAddrPort("[ff3e::1:1]:9"), make([]byte, 100)), 48)
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"ipv4 listed group and port", udp("239.1.1.1:5000"), true},
		{"ipv4 listed group second port", udp("239.1.1.1:5002"), true},
		{"ipv4 second group", udp("239.1.1.2:6000"), true},
		{"ipv4 with options", packettest.WithIPv4Options(udp("239.1.1.1:5000"), []byte{0x94, 4, 0, 0, 1, 1, 1, 0}), true},
		{"ipv4 ethernet padding", append(udp("239.1.1.2:6000"), make([]byte, 11)...), true},
		{"ipv4 first fragment of listed group", frags4[0], true},
		{"ipv4 later fragment of listed group", frags4[1], true},
		{"ipv4 other port", udp("239.1.1.1:5001"), false},
		{"ipv4 port of another group", udp("239.1.1.1:6000"), false},
		{"ipv4 other group", udp("239.1.1.3:5000"), false},
		{"ipv4 unicast", udp("10.0.0.1:5000"), false},
		{"ipv4 tcp to listed group", edit(udp("239.1.1.1:5000"), func(p []byte) { p[9] = 6 }), false},
		{"ipv4 fragment of other group", edit(frags4[1], func(p []byte) { p[19] = 3 }), false},
		{"ipv4 fragment of tcp", edit(frags4[1], func(p []byte) { p[9] = 6 }), false},
		{"ipv4 truncated before port", udp("239.1.1.1:5000")[:22], false},
		{"ipv6 listed group and port", udp("[ff3e::1:1]:5000"), true},
		{"ipv6 second group", udp("[ff3e::1:2]:7000"), true},
		{"ipv6 hop-by-hop to listed group", packettest.WithHopByHop6(udp("[ff3e::1:1]:1")), true},
		{"ipv6 routing header to listed group", withExt6(udp("[ff3e::1:2]:1"), 43), true},
		{"ipv6 destination options to listed group", withExt6(udp("[ff3e::1:2]:1"), 60), true},
		{"ipv6 hop-by-hop then destination options", packettest.WithHopByHop6(withExt6(udp("[ff3e::1:2]:1"), 60)), true},
		{"ipv6 first fragment of listed group", frags6[0], true},
		{"ipv6 later fragment of listed group", frags6[1], true},
		{"ipv6 other port", udp("[ff3e::1:1]:5001"), false},
		{"ipv6 port of another group", udp("[ff3e::1:1]:7000"), false},
		{"ipv6 differs in word 0", udp("[ff3f::1:1]:5000"), false},
		{"ipv6 differs in word 1", udp("[ff3e:0:1::1:1]:5000"), false},
		{"ipv6 differs in word 2", udp("[ff3e::1:0:1:1]:5000"), false},
		{"ipv6 differs in word 3", udp("[ff3e::1:3]:5000"), false},
		{"ipv6 hop-by-hop to other group", packettest.WithHopByHop6(udp("[ff3e::1:3]:5000")), false},
		{"ipv6 fragment of other group", packettest.Fragment(udp("[ff3e::1:3]:5000"), 8)[0], false},
		{"ipv6 icmpv6 to listed group", edit(udp("[ff3e::1:1]:5000"), func(p []byte) { p[6] = 58 }), false},
		{"ipv6 mld behind hop-by-hop", edit(packettest.WithHopByHop6(udp("[ff3e::1:1]:5000")), func(p []byte) { p[40] = 58 }), false},
		{"ipv6 esp to listed group", edit(udp("[ff3e::1:1]:5000"), func(p []byte) { p[6] = 50 }), false},
		{"ipv6 hop-by-hop truncated", udp("[ff3e::1:1]:5000")[:40], false},
		{"ipv4-mapped address in ipv6 packet", edit(udp("[ff3e::1:1]:5000"), func(p []byte) {
			copy(p[24:40], netip.MustParseAddr("::ffff:239.1.1.1").AsSlice())
		}), false},
		{"empty", nil, false},
		{"version 5", edit(udp("239.1.1.1:5000"), func(p []byte) { p[0] = 0x55 }), false},
		{"arp", []byte{0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := accepts(t, v, tc.pkt); got != tc.want {
				t.Errorf("accepted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBuildEmptyDropsAll(t *testing.T) {
	prog, err := prefilter.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(prefilter.DropAll(), prog.Instructions); diff != "" {
		t.Errorf("Build(nil) is not DropAll (-want +got):\n%s", diff)
	}
	for _, v := range []*bpf.VM{vm(t, prog.Instructions), vm(t, prefilter.DropAll())} {
		for _, p := range [][]byte{udp("239.1.1.1:5000"), udp("[ff3e::1]:5000"), nil} {
			if accepts(t, v, p) {
				t.Errorf("accepted a packet")
			}
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		matches []prefilter.Match
		want    string
	}{
		{"no address", []prefilter.Match{match("239.1.1.1:1"), {Port: 5000}}, "filter match 1: no destination address"},
		{"port 0", []prefilter.Match{{Dst: netip.MustParseAddr("ff3e::1"), Port: 0}}, "filter match 0 (ff3e::1): port must be 1..65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prefilter.Build(tc.matches)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestBuildNormalisesAddresses(t *testing.T) {
	prog, err := prefilter.Build([]prefilter.Match{
		{Dst: netip.MustParseAddr("::ffff:239.1.1.1"), Port: 5000}, // IPv4-mapped, as ruleset keys hold it
		{Dst: netip.MustParseAddr("ff12::1%eth0"), Port: 5000},
		match("239.1.1.1:5000"), // duplicate
	})
	if err != nil {
		t.Fatal(err)
	}
	v := vm(t, prog.Instructions)
	for _, p := range [][]byte{udp("239.1.1.1:5000"), udp("[ff12::1]:5000")} {
		if !accepts(t, v, p) {
			t.Errorf("dropped a packet to a listed destination: % x", p[:40])
		}
	}
}

// TestBuildManyPortsOnOneGroup exercises tests split into segments (a
// conditional jump reaches at most 255 instructions) and bodies skipped with
// an unconditional jump.
func TestBuildManyPortsOnOneGroup(t *testing.T) {
	var matches []prefilter.Match
	for i := range 600 {
		port := uint16(1000 + 2*i)
		matches = append(matches, prefilter.Match{Dst: netip.MustParseAddr("239.1.1.1"), Port: port},
			prefilter.Match{Dst: netip.MustParseAddr("ff3e::1"), Port: port})
	}
	prog, err := prefilter.Build(matches)
	if err != nil {
		t.Fatal(err)
	}
	if !prog.Exact {
		t.Errorf("Exact = false for 2 groups × 600 ports")
	}
	v := vm(t, prog.Instructions)
	for port := 998; port <= 2200; port++ {
		want := port >= 1000 && port < 2200 && port%2 == 0
		for _, dst := range []string{"239.1.1.1", "[ff3e::1]"} {
			if got := accepts(t, v, udp(fmt.Sprintf("%s:%d", dst, port))); got != want {
				t.Errorf("%s:%d accepted = %v, want %v", dst, port, got, want)
			}
		}
	}
}

// set is a rule set for the large-set tests: the wanted pairs and the
// program built from them.
type set struct {
	wanted map[netip.AddrPort]bool
	prog   prefilter.Program
}

func buildSet(t testing.TB, pairs []netip.AddrPort) set {
	t.Helper()
	s := set{wanted: make(map[netip.AddrPort]bool)}
	var matches []prefilter.Match
	for _, p := range pairs {
		s.wanted[p] = true
		matches = append(matches, prefilter.Match{Dst: p.Addr(), Port: p.Port()})
	}
	var err error
	if s.prog, err = prefilter.Build(matches); err != nil {
		t.Fatal(err)
	}
	if n := len(prefilter.DropVLANTagged(s.prog.Instructions)); n > prefilter.MaxInstructions {
		t.Fatalf("program behind the VLAN guard has %d instructions, limit %d", n, prefilter.MaxInstructions)
	}
	return s
}

func addr4(i int) netip.Addr { return netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)}) }

func addr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x3e, 14: byte(i >> 8), 15: byte(i)})
}

func randomAddr6(r *rand.Rand) netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0], b[1] = 0xff, 0x3e
	return netip.AddrFrom16(b)
}

func randomAddr4(r *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{239, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
}

// TestBuildLargeSets checks sets of up to 5,000 groups on one interface: the
// program fits, accepts every wanted datagram (also as a fragment and, for
// IPv6, behind a Hop-by-Hop header), and drops traffic outside the set's
// address and port ranges. Exact programs must also drop every unwanted
// pair the test tries.
func TestBuildLargeSets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func(i int) netip.AddrPort) []netip.AddrPort {
		out := make([]netip.AddrPort, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	tests := []struct {
		name      string
		pairs     []netip.AddrPort
		wantExact bool
		// outside are packets no coarsening may accept.
		outside []netip.AddrPort
	}{
		{"5000 consecutive ipv4 groups one port", gen(5000, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr4(i), 5000) }), true, nil},
		{"5000 consecutive ipv6 groups one port", gen(5000, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr6(i), 5000) }), true, nil},
		{"5000 ipv4 groups own ports", gen(5000, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr4(i), uint16(10000+i)) }), false,
			[]netip.AddrPort{netip.MustParseAddrPort("239.1.19.136:10000"), netip.MustParseAddrPort("239.1.0.0:9999")}},
		{"5000 ipv6 groups own ports", gen(5000, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr6(i), uint16(10000+i)) }), false,
			[]netip.AddrPort{netip.MustParseAddrPort("[ff3e::1388]:10000"), netip.MustParseAddrPort("[ff3f::1]:10000")}},
		{"5000 random ipv4 groups random ports", gen(5000, func(int) netip.AddrPort { return netip.AddrPortFrom(randomAddr4(r), uint16(1+r.IntN(65535))) }), false,
			[]netip.AddrPort{netip.MustParseAddrPort("238.1.1.1:5000"), netip.MustParseAddrPort("10.1.1.1:5000")}},
		{"5000 random ipv6 groups random ports", gen(5000, func(int) netip.AddrPort { return netip.AddrPortFrom(randomAddr6(r), uint16(1+r.IntN(65535))) }), false,
			[]netip.AddrPort{netip.MustParseAddrPort("[ff3d::1]:5000"), netip.MustParseAddrPort("[fe80::1]:5000")}},
		{"2500 random groups per family", gen(5000, func(i int) netip.AddrPort {
			if i%2 == 0 {
				return netip.AddrPortFrom(randomAddr4(r), uint16(5000+r.IntN(100)))
			}
			return netip.AddrPortFrom(randomAddr6(r), uint16(5000+r.IntN(100)))
		}), false, []netip.AddrPort{netip.MustParseAddrPort("239.1.1.1:4999"), netip.MustParseAddrPort("[ff3e::1]:5100")}},
		{"670 scattered ipv4 groups own ports (documented limit)", gen(670, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr4(3*i), uint16(10000+3*i)) }), true, nil},
		{"670 scattered ipv6 groups own ports (documented limit)", gen(670, func(i int) netip.AddrPort { return netip.AddrPortFrom(addr6(3*i), uint16(10000+3*i)) }), true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := buildSet(t, tc.pairs)
			if s.prog.Exact != tc.wantExact {
				t.Errorf("Exact = %v, want %v (%d instructions)", s.prog.Exact, tc.wantExact, len(s.prog.Instructions))
			}
			t.Logf("%d pairs: %d instructions, exact %v", len(tc.pairs), len(s.prog.Instructions), s.prog.Exact)
			v := vm(t, s.prog.Instructions)
			for i, p := range tc.pairs {
				if !accepts(t, v, udp(p.String())) {
					t.Fatalf("dropped wanted %v", p)
				}
				if i%50 != 0 {
					continue // the variants below on a sample
				}
				frag := packettest.Fragment(udp(p.String()), 8)[1]
				if !accepts(t, v, frag) {
					t.Fatalf("dropped a fragment to wanted %v", p)
				}
				if p.Addr().Is6() && !accepts(t, v, packettest.WithHopByHop6(udp(p.String()))) {
					t.Fatalf("dropped hop-by-hop to wanted %v", p)
				}
			}
			for _, p := range tc.outside {
				if accepts(t, v, udp(p.String())) {
					t.Errorf("accepted %v, outside every range of the set", p)
				}
			}
			if !s.prog.Exact {
				return
			}
			// Exact: every pair that mixes a wanted address with a
			// wanted port of another address is dropped.
			for i := 0; i < len(tc.pairs); i += 7 {
				a, b := tc.pairs[i], tc.pairs[(i*31+1)%len(tc.pairs)]
				p := netip.AddrPortFrom(a.Addr(), b.Port())
				if got := accepts(t, v, udp(p.String())); got != s.wanted[p] {
					t.Fatalf("%v accepted = %v, want %v", p, got, s.wanted[p])
				}
			}
		})
	}
}

// TestCoarseProgramsStillFilter checks that coarsening keeps most of the
// filter's value: of random traffic over the same address space and ports
// as a random 5,000-group set, a coarse program lets through less than a
// third (about a fifth at the time of writing) instead of all of it.
func TestCoarseProgramsStillFilter(t *testing.T) {
	for _, family := range []string{"ipv4", "ipv6", "both"} {
		t.Run(family, func(t *testing.T) {
			r := rand.New(rand.NewPCG(9, 10))
			addr := func(i int) netip.Addr {
				if family == "ipv4" || (family == "both" && i%2 == 0) {
					return randomAddr4(r)
				}
				return randomAddr6(r)
			}
			pairs := make([]netip.AddrPort, 5000)
			for i := range pairs {
				pairs[i] = netip.AddrPortFrom(addr(i), uint16(1+r.IntN(65535)))
			}
			s := buildSet(t, pairs)
			if s.prog.Exact {
				t.Fatalf("random 5000-group set built exactly in %d instructions; the test needs a coarse one", len(s.prog.Instructions))
			}
			v := vm(t, s.prog.Instructions)
			const n = 4000
			accepted := 0
			for i := range n {
				if accepts(t, v, udp(netip.AddrPortFrom(addr(i), uint16(1+r.IntN(65535))).String())) {
					accepted++
				}
			}
			t.Logf("%d instructions; accepted %d of %d random packets", len(s.prog.Instructions), accepted, n)
			if accepted*3 > n {
				t.Errorf("coarse program accepted %d of %d random packets, want under a third", accepted, n)
			}
		})
	}
}

// TestBuildRandomSets compares programs with the set they were built from,
// for random sets drawn from small pools of addresses and ports so that
// addresses share words and near misses are common.
func TestBuildRandomSets(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pool4 := []netip.Addr{}
	pool6 := []netip.Addr{}
	for i := range 40 {
		pool4 = append(pool4, netip.AddrFrom4([4]byte{239, byte(i % 3), byte(i % 5), byte(i)}))
		pool6 = append(pool6, netip.AddrFrom16([16]byte{0: 0xff, 1: 0x3e, 5: byte(i % 2), 9: byte(i % 3), 13: byte(i % 4), 15: byte(i)}))
	}
	pool := append(pool4, pool6...)
	for round := range 40 {
		n := 1 + r.IntN(60)
		var pairs []netip.AddrPort
		for range n {
			pairs = append(pairs, netip.AddrPortFrom(pool[r.IntN(len(pool))], uint16(5000+r.IntN(8))))
		}
		s := buildSet(t, pairs)
		if !s.prog.Exact {
			t.Fatalf("round %d: %d pairs not exact", round, n)
		}
		v := vm(t, s.prog.Instructions)
		for _, a := range pool {
			for port := uint16(4999); port <= 5008; port++ {
				p := netip.AddrPortFrom(a, port)
				if got := accepts(t, v, udp(p.String())); got != s.wanted[p] {
					t.Fatalf("round %d (%v): %v accepted = %v, want %v", round, pairs, p, got, s.wanted[p])
				}
			}
		}
	}
}

func BenchmarkBuild5000(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	matches := make([]prefilter.Match, 5000)
	for i := range matches {
		matches[i] = prefilter.Match{Dst: randomAddr4(r), Port: uint16(1 + r.IntN(65535))}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := prefilter.Build(matches); err != nil {
			b.Fatal(err)
		}
	}
}
