package inetsum

import "testing"

// The example of RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2 after
// folding, so the checksum is its complement, 220d; a message carrying it
// sums to a checksum of 0.
func TestChecksum(t *testing.T) {
	msg := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(Add(0, msg)); got != 0x220d {
		t.Errorf("Checksum = %#04x, want 0x220d", got)
	}
	if got := Checksum(Add(0, append(msg, 0x22, 0x0d))); got != 0 {
		t.Errorf("over a message with its checksum: %#04x, want 0", got)
	}
	// Chained sums equal one sum over the concatenation, also with an odd
	// last byte padded with zero.
	if a, b := Checksum(Add(Add(0, msg[:4]), msg[4:7])), Checksum(Add(0, append(msg[:7:7], 0))); a != b {
		t.Errorf("chained %#04x, whole %#04x", a, b)
	}
}
