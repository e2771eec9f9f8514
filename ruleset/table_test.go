package ruleset

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func mustKey(t testing.TB, ifindex int, group string, port int, source string) Key {
	t.Helper()
	k, err := KeyFor(ifindex, Input{Interface: "x", Group: group, Port: port, Source: source})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// packetKey is the key a worker builds for a received datagram.
func packetKey(ifindex int, dst, src string, port int) Key {
	k := Key{IfIndex: int32(ifindex), Port: uint16(port)}
	d, s := netip.MustParseAddr(dst), netip.MustParseAddr(src)
	if d.Is4() {
		k.SetIPv4(d.As4(), s.As4())
	} else {
		k.SetIPv6(d.As16(), s.As16())
	}
	return k
}

func TestTableLookup(t *testing.T) {
	keys := []Key{
		0: mustKey(t, 2, "239.1.1.1", 5000, ""),
		1: mustKey(t, 2, "239.1.1.1", 5000, "10.0.0.9"),
		2: mustKey(t, 2, "239.1.1.2", 5000, "10.0.0.9"),
		3: mustKey(t, 3, "239.1.1.1", 5000, ""),
		4: mustKey(t, 2, "ff3e::1", 5000, ""),
		5: mustKey(t, 2, "ff3e::1", 5000, "2001:db8::9"),
		6: mustKey(t, 2, "10.0.0.1", 5001, ""),
	}
	tab, err := NewTable(keys)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != len(keys) {
		t.Errorf("Len() = %d, want %d", tab.Len(), len(keys))
	}
	tests := []struct {
		name string
		key  Key
		want int32
	}{
		{"any-source rule, other sender", packetKey(2, "239.1.1.1", "10.0.0.7", 5000), 0},
		{"source-specific rule wins", packetKey(2, "239.1.1.1", "10.0.0.9", 5000), 1},
		{"source-specific only, right sender", packetKey(2, "239.1.1.2", "10.0.0.9", 5000), 2},
		{"source-specific only, other sender", packetKey(2, "239.1.1.2", "10.0.0.8", 5000), -1},
		{"other interface", packetKey(3, "239.1.1.1", "10.0.0.9", 5000), 3},
		{"unknown interface", packetKey(4, "239.1.1.1", "10.0.0.9", 5000), -1},
		{"other port", packetKey(2, "239.1.1.1", "10.0.0.9", 5001), -1},
		{"IPv6 any source", packetKey(2, "ff3e::1", "2001:db8::1", 5000), 4},
		{"IPv6 source-specific", packetKey(2, "ff3e::1", "2001:db8::9", 5000), 5},
		{"unicast", packetKey(2, "10.0.0.1", "10.0.0.2", 5001), 6},
		{"zero source looks up any-source key", mustKey(t, 2, "239.1.1.1", 5000, ""), 0},
		{"zero source does not match source-specific", mustKey(t, 2, "239.1.1.2", 5000, ""), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.key
			got, ok := tab.Lookup(&tt.key)
			if got != tt.want || ok != (tt.want >= 0) {
				t.Errorf("Lookup(%v) = %d, %v; want %d, %v", tt.key, got, ok, tt.want, tt.want >= 0)
			}
			if tt.key != before {
				t.Errorf("Lookup modified its key: %v, was %v", tt.key, before)
			}
		})
	}
}

func TestTableWithoutSourceSpecificKeys(t *testing.T) {
	tab, err := NewTable([]Key{mustKey(t, 1, "239.0.0.1", 1, ""), mustKey(t, 1, "239.0.0.2", 1, "")})
	if err != nil {
		t.Fatal(err)
	}
	for i, dst := range []string{"239.0.0.1", "239.0.0.2"} {
		k := packetKey(1, dst, "10.0.0.1", 1)
		if got, ok := tab.Lookup(&k); !ok || got != int32(i) {
			t.Errorf("Lookup(%v) = %d, %v; want %d, true", k, got, ok, i)
		}
	}
}

func TestTableEmptyAndNil(t *testing.T) {
	empty, err := NewTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	k := packetKey(1, "239.0.0.1", "10.0.0.1", 1)
	for name, tab := range map[string]*Table{"nil": nil, "empty": empty} {
		if got, ok := tab.Lookup(&k); got != -1 || ok {
			t.Errorf("%s table: Lookup = %d, %v; want -1, false", name, got, ok)
		}
		if tab.Len() != 0 {
			t.Errorf("%s table: Len() = %d, want 0", name, tab.Len())
		}
	}
}

func TestNewTableRejectsDuplicates(t *testing.T) {
	keys := []Key{
		mustKey(t, 1, "239.0.0.1", 1, ""),
		mustKey(t, 1, "239.0.0.2", 1, ""),
		mustKey(t, 1, "::ffff:239.0.0.1", 1, ""), // the same as keys[0]
	}
	_, err := NewTable(keys)
	want := "build lookup table: keys[0] and keys[2] are both 239.0.0.1:1 from any on ifindex 1"
	if err == nil || err.Error() != want {
		t.Errorf("NewTable() error = %v, want %q", err, want)
	}
}

func TestTableManyKeys(t *testing.T) {
	keys := benchKeys(20000, false)
	keys = append(keys, benchKeys(20000, true)...)
	tab, err := NewTable(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if got, ok := tab.Lookup(&keys[i]); !ok || got != int32(i) {
			t.Fatalf("Lookup(keys[%d] = %v) = %d, %v; want %d, true", i, keys[i], got, ok, i)
		}
	}
	misses := benchMisses(keys)
	for i := range misses {
		if got, ok := tab.Lookup(&misses[i]); ok {
			t.Fatalf("Lookup(%v) = %d, true; want a miss", misses[i], got)
		}
	}
}

func TestKeyFor(t *testing.T) {
	k := mustKey(t, 7, "ff3e::1", 5000, "2001:db8::9")
	want := Key{IfIndex: 7, Port: 5000,
		Dst: netip.MustParseAddr("ff3e::1").As16(), Src: netip.MustParseAddr("2001:db8::9").As16()}
	if k != want {
		t.Errorf("KeyFor = %v, want %v", k, want)
	}
	k4 := mustKey(t, 7, "239.1.1.1", 5000, "")
	if got := netip.AddrFrom16(k4.Dst); got != netip.MustParseAddr("::ffff:239.1.1.1") {
		t.Errorf("KeyFor IPv4 Dst = %v, want ::ffff:239.1.1.1", got)
	}
	if k4.Src != ([16]byte{}) {
		t.Errorf("KeyFor without source: Src = %v, want zero", k4.Src)
	}

	errs := []struct {
		name    string
		ifindex int
		in      Input
		want    string
	}{
		{"ifindex 0", 0, Input{Interface: "e", Group: "239.0.0.1", Port: 1}, "key for input on e: ifindex 0 out of range"},
		{"ifindex too big", 1 << 31, Input{Interface: "e", Group: "239.0.0.1", Port: 1}, "key for input on e: ifindex 2147483648 out of range"},
		{"port 0", 1, Input{Interface: "e", Group: "239.0.0.1"}, "key for input on e: port 0 out of range"},
		{"bad group", 1, Input{Interface: "e", Group: "x", Port: 1}, "key for input on e: group: "},
		{"bad source", 1, Input{Interface: "e", Group: "239.0.0.1", Port: 1, Source: "y"}, "key for input on e: source: "},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := KeyFor(tt.ifindex, tt.in)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("KeyFor() error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		key  Key
		want string
	}{
		{packetKey(3, "239.1.1.1", "10.0.0.9", 5000), "239.1.1.1:5000 from 10.0.0.9 on ifindex 3"},
		{packetKey(3, "ff3e::1", "2001:db8::9", 5000), "[ff3e::1]:5000 from 2001:db8::9 on ifindex 3"},
		{Key{IfIndex: 1, Port: 1, Dst: netip.MustParseAddr("239.0.0.1").As16()}, "239.0.0.1:1 from any on ifindex 1"},
	}
	for _, tt := range tests {
		if got := tt.key.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// benchKeys returns n distinct any-source keys spread over a few
// interfaces and ports, with groups counting up as a real ruleset's do.
func benchKeys(n int, v6 bool) []Key {
	keys := make([]Key, n)
	for i := range keys {
		k := Key{IfIndex: int32(1 + i%4), Port: uint16(5000 + i%7)}
		if v6 {
			k.Dst = netip.MustParseAddr(fmt.Sprintf("ff3e::%x:%x", i>>16, i&0xffff)).As16()
		} else {
			k.Dst = netip.AddrFrom4([4]byte{239, byte(i >> 16), byte(i >> 8), byte(i)}).As16()
		}
		keys[i] = k
	}
	return keys
}

// benchPackets returns the keys of datagrams that hit keys: the same
// destination with a sender address set, as a worker builds them.
func benchPackets(keys []Key) []Key {
	pkts := make([]Key, len(keys))
	for i, k := range keys {
		k.Src = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).As16()
		if netip.AddrFrom16(k.Dst).Is4In6() == false {
			k.Src = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i&0xffff)).As16()
		}
		pkts[i] = k
	}
	return pkts
}

// benchMisses returns packet keys like benchPackets' but on a port no key
// uses, so every lookup misses.
func benchMisses(keys []Key) []Key {
	pkts := benchPackets(keys)
	for i := range pkts {
		pkts[i].Port = 4999
	}
	return pkts
}

// benchmarkLookup measures Lookup of datagram keys against a table of any-
// source keys: hits (each packet matches a rule) or misses (none does).
// With sourceRules, the table also holds as many source-specific keys for
// other senders, so every lookup takes the exact probe before the any-source
// one.
func benchmarkLookup(b *testing.B, v6, hit, sourceRules bool) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			keys := benchKeys(n, v6)
			pkts := benchPackets(keys)
			if !hit {
				pkts = benchMisses(keys)
			}
			if sourceRules {
				for _, k := range benchPackets(keys) {
					k.Src[0] ^= 0xff // another sender, never seen
					keys = append(keys, k)
				}
			}
			tab, err := NewTable(keys)
			if err != nil {
				b.Fatal(err)
			}
			// Look the packets up in a shuffled order so consecutive
			// lookups land in unrelated slots, as interleaved streams do.
			perm := make([]Key, len(pkts))
			for i, j := range randPermSeed(len(pkts), 1) {
				perm[i] = pkts[j]
			}
			b.ReportAllocs()
			b.ResetTimer()
			found, j := 0, 0
			for range b.N {
				if _, ok := tab.Lookup(&perm[j]); ok {
					found++
				}
				if j++; j == len(perm) {
					j = 0
				}
			}
			b.StopTimer()
			if want := map[bool]int{true: b.N, false: 0}[hit]; found != want {
				b.Fatalf("%d of %d lookups found a rule, want %d", found, b.N, want)
			}
		})
	}
}

func BenchmarkLookupIPv4Hit(b *testing.B)  { benchmarkLookup(b, false, true, false) }
func BenchmarkLookupIPv4Miss(b *testing.B) { benchmarkLookup(b, false, false, false) }
func BenchmarkLookupIPv6Hit(b *testing.B)  { benchmarkLookup(b, true, true, false) }
func BenchmarkLookupIPv6Miss(b *testing.B) { benchmarkLookup(b, true, false, false) }

// BenchmarkLookupIPv4HotFlows looks up 1,000 active streams among n rules:
// what a relay with many configured but few busy inputs sees. The uniform
// benchmarks above touch every rule in turn, so at 100,000 rules (a table
// larger than L2) each of their hits waits on memory; here the busy slots
// stay cached and ns/op stays flat as the ruleset grows.
func BenchmarkLookupIPv4HotFlows(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			keys := benchKeys(n, false)
			tab, err := NewTable(keys)
			if err != nil {
				b.Fatal(err)
			}
			all := benchPackets(keys)
			hot := make([]Key, 1000)
			for i, j := range randPermSeed(len(all), 2)[:len(hot)] {
				hot[i] = all[j]
			}
			b.ReportAllocs()
			b.ResetTimer()
			found, j := 0, 0
			for range b.N {
				if _, ok := tab.Lookup(&hot[j]); ok {
					found++
				}
				if j++; j == len(hot) {
					j = 0
				}
			}
			b.StopTimer()
			if found != b.N {
				b.Fatalf("%d of %d lookups found a rule", found, b.N)
			}
		})
	}
}

// BenchmarkLookupIPv4HitWithSourceRules shows the cost of the second probe.
func BenchmarkLookupIPv4HitWithSourceRules(b *testing.B) { benchmarkLookup(b, false, true, true) }

// TestTableProbeLength guards the hash: keys that differ in only a few
// bits, as real rulesets' do, must still spread over the slots. With linear
// probing at load ≤ 0.5 a hit takes 1.5 probes on average.
func TestTableProbeLength(t *testing.T) {
	const n = 20000
	generated := func(f func(i int) Key) []Key {
		keys := make([]Key, n)
		for i := range keys {
			keys[i] = f(i)
		}
		return keys
	}
	patterns := map[string][]Key{
		"IPv4 groups":  benchKeys(n, false),
		"IPv6 groups":  benchKeys(n, true),
		"ports only":   generated(func(i int) Key { return mustKey(t, 1, "239.0.0.1", 1+i, "") }),
		"ifindex only": generated(func(i int) Key { return mustKey(t, 1+i, "ff02::1", 5000, "") }),
		"sources only": generated(func(i int) Key {
			return mustKey(t, 1, "232.1.1.1", 5000, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
		}),
	}
	for name, keys := range patterns {
		t.Run(name, func(t *testing.T) {
			tab, err := NewTable(keys)
			if err != nil {
				t.Fatal(err)
			}
			total, longest := 0, 0
			for i := range keys {
				probes := 1
				for s := hashKey(&keys[i]) >> 32 & tab.mask; tab.slots[s].val != int32(i); s = (s + 1) & tab.mask {
					probes++
				}
				total += probes
				longest = max(longest, probes)
			}
			if avg := float64(total) / n; avg > 2 || longest > 64 {
				t.Errorf("average probe length %.2f (want ≤ 2), longest %d (want ≤ 64)", avg, longest)
			}
		})
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab, err := NewTable([]Key{mustKey(t, 1, "239.0.0.1", 1, ""), mustKey(t, 1, "239.0.0.2", 1, "10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	var k Key
	k.IfIndex, k.Port = 1, 1
	k.SetIPv4([4]byte{239, 0, 0, 1}, [4]byte{10, 0, 0, 9})
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := tab.Lookup(&k); !ok {
			t.Fatal("Lookup missed")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per call, want 0", allocs)
	}
}
