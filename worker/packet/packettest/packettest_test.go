package packettest_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

var (
	src4 = netip.MustParseAddrPort("10.0.0.9:40000")
	dst4 = netip.MustParseAddrPort("239.1.1.1:5000")
	src6 = netip.MustParseAddrPort("[fd00::9]:40000")
	dst6 = netip.MustParseAddrPort("[ff3e::1:1]:5000")
)

// onesSum is the RFC 1071 ones' complement sum of the given byte strings
// concatenated (each of even length except possibly the last).
func onesSum(parts ...[]byte) uint16 {
	var s uint32
	all := bytes.Join(parts, nil)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	for i := 0; i < len(all); i += 2 {
		s += uint32(binary.BigEndian.Uint16(all[i:]))
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestBuildUDP4(t *testing.T) {
	payload := []byte("hello, relay")
	p := packettest.BuildUDP4(src4, dst4, payload)
	if got, want := len(p), 20+8+len(payload); got != want {
		t.Fatalf("length %d, want %d", got, want)
	}
	if got := onesSum(p[:20]); got != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: sum %#04x", got)
	}
	s, d := src4.Addr().As4(), dst4.Addr().As4()
	ulen := []byte{0, 17, byte(len(p[20:]) >> 8), byte(len(p[20:]))}
	if got := onesSum(s[:], d[:], ulen, p[20:]); got != 0xffff {
		t.Errorf("UDP checksum does not verify: sum %#04x", got)
	}
	hdr := map[string]uint64{
		"version/ihl": uint64(p[0]), "total": uint64(binary.BigEndian.Uint16(p[2:])),
		"ttl": uint64(p[8]), "proto": uint64(p[9]),
		"sport": uint64(binary.BigEndian.Uint16(p[20:])), "dport": uint64(binary.BigEndian.Uint16(p[22:])),
		"ulen": uint64(binary.BigEndian.Uint16(p[24:])),
	}
	want := map[string]uint64{"version/ihl": 0x45, "total": 40, "ttl": 64, "proto": 17, "sport": 40000, "dport": 5000, "ulen": 20}
	if diff := cmp.Diff(want, hdr); diff != "" {
		t.Errorf("header fields (-want +got):\n%s", diff)
	}
	if !bytes.Equal(p[28:], payload) {
		t.Errorf("payload %q, want %q", p[28:], payload)
	}
}

func TestBuildUDP6(t *testing.T) {
	payload := []byte("hello, relay")
	p := packettest.BuildUDP6(src6, dst6, payload)
	if got, want := len(p), 40+8+len(payload); got != want {
		t.Fatalf("length %d, want %d", got, want)
	}
	s, d := src6.Addr().As16(), dst6.Addr().As16()
	pseudo := []byte{0, 0, 0, byte(len(p[40:])), 0, 0, 0, 17}
	if got := onesSum(s[:], d[:], pseudo, p[40:]); got != 0xffff {
		t.Errorf("UDP checksum does not verify: sum %#04x", got)
	}
	if p[0] != 0x60 || p[6] != 17 || binary.BigEndian.Uint16(p[4:]) != uint16(8+len(payload)) {
		t.Errorf("fixed header % x", p[:8])
	}
	if !bytes.Equal(p[8:24], s[:]) || !bytes.Equal(p[24:40], d[:]) {
		t.Errorf("addresses % x", p[8:40])
	}
}

func TestWithIPv4Options(t *testing.T) {
	p := packettest.WithIPv4Options(packettest.BuildUDP4(src4, dst4, []byte("x")), []byte{0x94, 4, 0, 0})
	if p[0] != 0x46 || binary.BigEndian.Uint16(p[2:]) != uint16(len(p)) || len(p) != 33 {
		t.Errorf("header % x, length %d", p[:4], len(p))
	}
	if got := onesSum(p[:24]); got != 0xffff {
		t.Errorf("header checksum does not verify after inserting options: %#04x", got)
	}
}

func TestWithHopByHop6(t *testing.T) {
	orig := packettest.BuildUDP6(src6, dst6, []byte("x"))
	p := packettest.WithHopByHop6(orig)
	if p[6] != 0 || p[40] != 17 || binary.BigEndian.Uint16(p[4:]) != uint16(len(p)-40) {
		t.Errorf("hop-by-hop chain: next %d, inner next %d, payload length %d of %d bytes", p[6], p[40], binary.BigEndian.Uint16(p[4:]), len(p))
	}
	if !bytes.Equal(p[48:], orig[40:]) {
		t.Errorf("UDP datagram changed")
	}
}

// TestFragment reassembles the fragments by their offsets, checking the
// flags on the way, and compares with the original IP payload.
func TestFragment(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 300)
	t.Run("ipv4", func(t *testing.T) {
		p := packettest.BuildUDP4(src4, dst4, payload)
		frags := packettest.Fragment(p, 1480)
		var got []byte
		for i, f := range frags {
			more := binary.BigEndian.Uint16(f[6:])&0x2000 != 0
			off := int(binary.BigEndian.Uint16(f[6:])&0x1fff) * 8
			if more != (i < len(frags)-1) || off != len(got) || onesSum(f[:20]) != 0xffff {
				t.Fatalf("fragment %d: more %v offset %d (have %d bytes), checksum %#04x", i, more, off, len(got), onesSum(f[:20]))
			}
			got = append(got, f[20:]...)
		}
		if len(frags) != 3 || !bytes.Equal(got, p[20:]) {
			t.Errorf("%d fragments reassemble to %d bytes, want 3 and %d", len(frags), len(got), len(p[20:]))
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		p := packettest.BuildUDP6(src6, dst6, payload)
		frags := packettest.Fragment(p, 1448)
		var got []byte
		for i, f := range frags {
			offM := binary.BigEndian.Uint16(f[42:])
			if f[6] != 44 || f[40] != 17 || int(offM&^7) != len(got) || (offM&1 == 1) != (i < len(frags)-1) {
				t.Fatalf("fragment %d: next %d, inner next %d, offset/M %#04x (have %d bytes)", i, f[6], f[40], offM, len(got))
			}
			got = append(got, f[48:]...)
		}
		if len(frags) != 3 || !bytes.Equal(got, p[40:]) {
			t.Errorf("%d fragments reassemble to %d bytes, want 3 and %d", len(frags), len(got), len(p[40:]))
		}
	})
}

func TestEthernetFrame(t *testing.T) {
	v4 := packettest.BuildUDP4(src4, netip.MustParseAddrPort("239.129.2.3:5000"), []byte("x"))
	v6 := packettest.BuildUDP6(src6, dst6, []byte("x"))
	srcMAC := []byte{0x02, 0, 0, 0, 0, 1}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"IPv4: low 23 bits of the group", packettest.EthernetFrame(v4, 0),
			cat([]byte{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}, srcMAC, []byte{0x08, 0x00}, v4)},
		{"IPv6 (ff3e::1:1): low 32 bits of the group", packettest.EthernetFrame(v6, 0),
			cat([]byte{0x33, 0x33, 0x00, 0x01, 0x00, 0x01}, srcMAC, []byte{0x86, 0xdd}, v6)},
		{"QinQ tags and an EtherType given", packettest.EthernetFrame(v4, 0x8100, 0x88a8, 200),
			cat([]byte{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}, srcMAC, []byte{0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00}, v4)},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
