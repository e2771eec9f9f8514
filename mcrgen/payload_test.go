package mcrgen

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{HeaderSize, HeaderSize + 1, 31, 32, 33, 1316, MaxSize} {
		for _, h := range []Header{
			{Stream: 0, Seq: 0, SentUnixNano: 0},
			{Stream: 7, Seq: 1, SentUnixNano: 1_700_000_000_123_456_789},
			{Stream: 0xffff, Seq: 1<<64 - 1, SentUnixNano: -1},
		} {
			p := make([]byte, size)
			FillPayload(p, h)
			got, err := ParsePayload(p)
			if err != nil {
				t.Fatalf("size %d, %+v: %v", size, h, err)
			}
			if diff := cmp.Diff(h, got); diff != "" {
				t.Errorf("size %d: header (-want +got):\n%s", size, diff)
			}
		}
	}
}

// TestPayloadDetectsEveryCorruptedByte flips bits in each byte of payloads
// of several sizes in turn; every change must be rejected.
func TestPayloadDetectsEveryCorruptedByte(t *testing.T) {
	for _, size := range []int{HeaderSize, 37, 1316} {
		p := make([]byte, size)
		FillPayload(p, Header{Stream: 3, Seq: 12345, SentUnixNano: 99})
		for i := range p {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				p[i] ^= flip
				if _, err := ParsePayload(p); err == nil {
					t.Errorf("size %d: byte %d ^ %#x not detected", size, i, flip)
				}
				p[i] ^= flip
			}
		}
		if _, err := ParsePayload(p); err != nil {
			t.Fatalf("size %d: restored payload rejected: %v", size, err)
		}
	}
}

func TestParsePayloadErrors(t *testing.T) {
	valid := func(size int, seq uint64) []byte {
		p := make([]byte, size)
		FillPayload(p, Header{Seq: seq})
		return p
	}
	// resum recomputes the checksum, as a relay that mixed up datagrams
	// but fixed checksums would.
	resum := func(p []byte) []byte {
		binary.BigEndian.PutUint32(p[offChecksum:], checksum(p))
		return p
	}
	tests := []struct {
		name string
		p    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"one byte short of a header", valid(HeaderSize, 1)[:HeaderSize-1], ErrShort},
		{"longer than a datagram", make([]byte, maxDatagram+1), ErrLong},
		{"zeros", make([]byte, 100), ErrMagic},
		{"checksum", func() []byte { p := valid(100, 1); p[60]++; return p }(), ErrChecksum},
		{"truncated", valid(100, 1)[:99], ErrChecksum},
		{"sequence rewritten", func() []byte {
			p := valid(100, 1)
			binary.BigEndian.PutUint64(p[offSeq:], 2)
			return resum(p)
		}(), ErrPattern},
		{"body of another datagram", func() []byte {
			p := valid(100, 1)
			copy(p[HeaderSize:], valid(100, 2)[HeaderSize:])
			return resum(p)
		}(), ErrPattern},
		{"last byte of a partial word", func() []byte { p := valid(37, 1); p[36]++; return resum(p) }(), ErrPattern},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePayload(tt.p); !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPayloadDoesNotAllocate(t *testing.T) {
	p := make([]byte, 1316)
	allocs := testing.AllocsPerRun(100, func() {
		FillPayload(p, Header{Seq: 1})
		if _, err := ParsePayload(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per fill and parse, want 0", allocs)
	}
}

func BenchmarkFillPayload(b *testing.B) {
	p := make([]byte, 1316)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		FillPayload(p, Header{Seq: uint64(i)})
	}
}

func BenchmarkParsePayload(b *testing.B) {
	p := make([]byte, 1316)
	FillPayload(p, Header{Seq: 42})
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePayload(p); err != nil {
			b.Fatal(err)
		}
	}
}
