package querier

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// addKernelSeeds seeds f with the IGMP (ipv4) or MLD (ipv6) messages of the
// captured kernel packets, without their IP headers.
func addKernelSeeds(f *testing.F, ipv6 bool) {
	for _, tc := range kernelPackets {
		p := unhex(f, tc.hex)
		switch {
		case !ipv6 && p[0]>>4 == 4:
			f.Add(p[(p[0]&0x0f)*4:])
		case ipv6 && p[0]>>4 == 6:
			f.Add(p[48:])
		}
	}
}

// FuzzParseIGMP: hostile IGMP never panics, and whatever parses encodes and
// parses back to the same message.
func FuzzParseIGMP(f *testing.F) {
	addKernelSeeds(f, false)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fix the checksum so that the fuzzer reaches the decoder.
		if len(b) >= 4 {
			b[2], b[3] = 0, 0
			c := igmpChecksum(b)
			b[2], b[3] = byte(c>>8), byte(c)
		}
		var m Message
		if ParseIGMP(b, &m) != nil {
			return
		}
		enc, err := AppendIGMP(nil, &m)
		if err != nil {
			t.Fatalf("AppendIGMP of a parsed message %+v: %v", m, err)
		}
		var again Message
		if err := ParseIGMP(enc, &again); err != nil {
			t.Fatalf("ParseIGMP of our own encoding %x: %v", enc, err)
		}
		if diff := cmp.Diff(m, again, msgOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseMLD is FuzzParseIGMP for MLD. The addresses are fixed: they
// only enter the checksum, which the fuzzer must get right to go deeper
// (its seeds have it right).
func FuzzParseMLD(f *testing.F) {
	addKernelSeeds(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		src, dst := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1")
		// Fix the checksum so that the fuzzer reaches the decoder.
		if len(b) >= 4 {
			b[2], b[3] = 0, 0
			c := icmp6Checksum(src, dst, b)
			b[2], b[3] = byte(c>>8), byte(c)
		}
		var m Message
		if ParseMLD(b, src, dst, &m) != nil {
			return
		}
		enc, err := AppendMLD(nil, &m, src, dst)
		if err != nil {
			t.Fatalf("AppendMLD of a parsed message %+v: %v", m, err)
		}
		var again Message
		if err := ParseMLD(enc, src, dst, &again); err != nil {
			t.Fatalf("ParseMLD of our own encoding %x: %v", enc, err)
		}
		if diff := cmp.Diff(m, again, msgOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParsePacket: hostile IP packets never panic the whole receive path,
// and a message reused across packets (as the receiver reuses its one
// Packet) parses each packet as a fresh one would.
func FuzzParsePacket(f *testing.F) {
	for _, tc := range kernelPackets {
		f.Add(unhex(f, tc.hex))
	}
	var reused Packet
	f.Fuzz(func(t *testing.T, b []byte) {
		var fresh Packet
		errFresh := ParsePacket(b, &fresh)
		errReused := ParsePacket(b, &reused)
		if errFresh != errReused {
			t.Fatalf("fresh Packet: %v, reused Packet: %v", errFresh, errReused)
		}
		if errFresh == nil {
			if diff := cmp.Diff(fresh, reused, msgOpts); diff != "" {
				t.Fatalf("reused Packet differs (-fresh +reused):\n%s", diff)
			}
		}
	})
}
