package packet

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"testing"

	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// refSum is the textbook ones' complement sum (RFC 1071): big-endian
// 16-bit words, a trailing odd byte padded with zero, carries folded back.
// It is the reference the fast sum is checked against.
func refSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = s&0xffff + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// refUDPChecksumOK checks the UDP checksum of d in buf the slow, obvious
// way: build the pseudo-header and the datagram as bytes and sum them.
func refUDPChecksumOK(buf []byte, d *Datagram) bool {
	u := buf[d.PayloadOff-udpHeader : d.PayloadOff+d.PayloadLen]
	if binary.BigEndian.Uint16(u[6:]) == 0 {
		return !d.V6
	}
	var pseudo []byte
	if d.V6 {
		pseudo = append(append(pseudo, d.Src[:]...), d.Dst[:]...)
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(u)))
		pseudo = append(pseudo, 0, 0, 0, protoUDP)
	} else {
		pseudo = append(append(pseudo, d.Src[12:]...), d.Dst[12:]...)
		pseudo = append(pseudo, 0, protoUDP)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(u)))
	}
	return refSum(append(pseudo, u...)) == 0xffff
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Packets the kernel sent with checksum offload off, captured with tcpdump,
// which reported "udp sum ok" for both. Their payloads have odd lengths.
const (
	kernelUDP4 = `4500 003d 8c03 4000 4011 2a5e c000 0201 c000 024d 9c41 1388 0029 da99 6d63 7220
		6368 6563 6b73 756d 2076 6563 746f 722c 206f 6464 206c 656e 6774 6821 21`
	kernelUDP6 = `600d 2e9c 002b 1140 2001 0db8 0000 0000 0000 0000 0000 0001 2001 0db8 0000 0000
		0000 0000 0000 0077 9c41 1388 002b cfa2 6d63 7220 6368 6563 6b73 756d 2076 6563
		746f 7220 6f76 6572 2049 5076 362c 206f 6464 2e`
)

func TestSumKnownVectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint16 // the big-endian ones' complement sum
	}{
		{"RFC 1071 example", "0001 f203 f4f5 f6f7", 0xddf2},
		{"empty", "", 0},
		{"one byte is the high byte of a word", "ab", 0xab00},
		{"carry out of 16 bits goes around", "ffff 0001", 0x0001},
		{"carry out of 64 bits goes around", "ffff ffff ffff ffff 0000 0000 0000 0001", 0x0001},
		{"all ones stays all ones", "ffff ffff ffff ffff ffff ffff ffff ffff ffff", 0xffff},
		{"33 bytes: the tail words and an odd byte",
			"0102 0304 0506 0708 090a 0b0c 0d0e 0f10 1112 1314 1516 1718 191a 1b1c 1d1e 1f20 21", 0x2211},
		{"65 bytes: one 64-byte round and an odd byte",
			"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
				"2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041", 0x4524},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustHex(t, tc.in)
			if got := bits.ReverseBytes16(fold(sum(b, 0))); got != tc.want {
				t.Errorf("sum = %#04x, want %#04x", got, tc.want)
			}
			if got := refSum(b); got != tc.want {
				t.Errorf("reference sum = %#04x, want %#04x (the vector is wrong)", got, tc.want)
			}
		})
	}
}

// zeroSum6 returns an IPv6 datagram whose computed checksum is 0, so that
// the sender puts 0xffff in the field (RFC 768: zero means "none").
func zeroSum6(t *testing.T) []byte {
	payload := make([]byte, 10)
	p := packettest.BuildUDP6(netip.MustParseAddrPort("[fd00::9]:4000"), netip.MustParseAddrPort("[ff3e::1]:5000"), payload)
	// Make the sum of everything but the checksum 0xffff: then the
	// checksum, its complement, is 0.
	binary.BigEndian.PutUint16(p[46:], 0)
	var d Datagram
	if Parse(p, &d) != OK {
		t.Fatal("base packet does not parse")
	}
	pseudo := append(append([]byte(nil), p[8:40]...), 0, 0, 0, 18, 0, 0, 0, protoUDP)
	rest := refSum(append(pseudo, p[40:]...))
	binary.BigEndian.PutUint16(p[56:], ^rest) // the last payload word
	if refSum(append(pseudo, p[40:]...)) != 0xffff {
		t.Fatal("could not make the sum all ones")
	}
	binary.BigEndian.PutUint16(p[46:], 0xffff)
	return p
}

func TestUDPChecksumOK(t *testing.T) {
	src4, dst4 := netip.MustParseAddrPort("10.0.0.9:4000"), netip.MustParseAddrPort("239.1.1.1:5000")
	src6, dst6 := netip.MustParseAddrPort("[fd00::9]:4000"), netip.MustParseAddrPort("[ff3e::1]:5000")
	flip := func(p []byte, off int) []byte {
		q := append([]byte(nil), p...)
		q[off] ^= 0x01
		return q
	}
	setSum := func(p []byte, off int, v uint16) []byte {
		q := append([]byte(nil), p...)
		binary.BigEndian.PutUint16(q[off:], v)
		return q
	}
	reheader := func(p []byte) []byte {
		packettest.SetIPv4Checksum(p)
		return p
	}
	k4, k6 := mustHex(t, kernelUDP4), mustHex(t, kernelUDP6)
	v4 := packettest.BuildUDP4(src4, dst4, []byte("odd payload"))
	v6 := packettest.BuildUDP6(src6, dst6, []byte("odd payload"))
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"IPv4 sent by the kernel", k4, true},
		{"IPv6 sent by the kernel", k6, true},
		{"IPv4 payload bit flipped", flip(k4, len(k4)-1), false},
		{"IPv6 payload bit flipped", flip(k6, len(k6)-1), false},
		{"IPv4 checksum field wrong", setSum(k4, 26, 0xda98), false},
		{"IPv4 source address changed (pseudo-header)", reheader(flip(k4, 15)), false},
		{"IPv6 destination address changed (pseudo-header)", flip(k6, 39), false},
		{"IPv4 UDP length shorter than the IP payload: only the datagram counts",
			append(append([]byte(nil), v4...), 0xde, 0xad), true},
		{"IPv4 zero checksum: none computed", setSum(v4, 26, 0), true},
		{"IPv6 zero checksum is invalid", setSum(v6, 46, 0), false},
		{"IPv6 computed zero sent as all ones", zeroSum6(t), true},
		{"IPv6 with a Hop-by-Hop header", packettest.WithHopByHop6(v6), true},
		{"IPv4 with options", packettest.WithIPv4Options(v4, []byte{1, 1, 1, 0}), true},
		{"IPv4 empty payload", packettest.BuildUDP4(src4, dst4, nil), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Datagram
			if r := Parse(tc.pkt, &d); r != OK {
				t.Fatalf("Parse = %v", r)
			}
			if got := UDPChecksumOK(tc.pkt, &d); got != tc.want {
				t.Errorf("UDPChecksumOK = %v, want %v", got, tc.want)
			}
			if got := refUDPChecksumOK(tc.pkt, &d); got != tc.want {
				t.Errorf("reference = %v, want %v (the case is wrong)", got, tc.want)
			}
		})
	}
}

// TestUDPChecksumOKEverySize checks every payload length from 0 to 2,100
// bytes, so that every path through sum's unrolled loop and tails meets
// every alignment: a correct datagram passes, one with any single byte
// changed fails.
func TestUDPChecksumOKEverySize(t *testing.T) {
	src, dst := netip.MustParseAddrPort("[fd00::9]:4000"), netip.MustParseAddrPort("[ff3e::1]:5000")
	for n := range 2100 {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + n)
		}
		p := packettest.BuildUDP6(src, dst, payload)
		var d Datagram
		if Parse(p, &d) != OK || !UDPChecksumOK(p, &d) {
			t.Fatalf("%d-byte payload: correct checksum rejected", n)
		}
		if n > 0 {
			p[len(p)-1-n/2] ^= 0x80
			if UDPChecksumOK(p, &d) {
				t.Fatalf("%d-byte payload: changed byte %d not detected", n, n-1-n/2)
			}
		}
	}
}

func TestUDPChecksumOKDoesNotAllocate(t *testing.T) {
	p := mustHex(t, kernelUDP6)
	var d Datagram
	Parse(p, &d)
	if n := testing.AllocsPerRun(100, func() { UDPChecksumOK(p, &d) }); n != 0 {
		t.Fatalf("UDPChecksumOK allocates %v times, want 0", n)
	}
}

// FuzzSum checks the fast sum against the reference on any bytes.
func FuzzSum(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7})
	f.Add(make([]byte, 33))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := bits.ReverseBytes16(fold(sum(b, 0))), refSum(b); got != want {
			t.Fatalf("sum of %d bytes = %#04x, reference %#04x", len(b), got, want)
		}
	})
}

// FuzzUDPChecksumOK checks UDPChecksumOK against the reference on every
// packet Parse accepts.
func FuzzUDPChecksumOK(f *testing.F) {
	f.Add(mustHex(f, kernelUDP4))
	f.Add(mustHex(f, kernelUDP6))
	f.Add(packettest.WithHopByHop6(mustHex(f, kernelUDP6)))
	f.Fuzz(func(t *testing.T, buf []byte) {
		var d Datagram
		if Parse(buf, &d) != OK {
			return
		}
		if got, want := UDPChecksumOK(buf, &d), refUDPChecksumOK(buf, &d); got != want {
			t.Fatalf("UDPChecksumOK = %v, reference %v", got, want)
		}
	})
}

func BenchmarkUDPChecksumOK(b *testing.B) {
	for _, n := range []int{64, 1024, 8972} {
		p := packettest.BuildUDP4(netip.MustParseAddrPort("10.0.0.9:4000"), netip.MustParseAddrPort("239.1.1.1:5000"), make([]byte, n))
		var d Datagram
		Parse(p, &d)
		b.Run(fmt.Sprintf("payload=%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if !UDPChecksumOK(p, &d) {
					b.Fatal("bad checksum")
				}
			}
		})
	}
}
