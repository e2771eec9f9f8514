package mcrgen

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Payload layout, big-endian (see the package documentation).
const (
	// HeaderSize is the length of the payload header, the smallest
	// verifiable payload.
	HeaderSize = 24
	// MaxSize is the largest payload mcrgen sends: below the 65,507-byte
	// limit of a UDP datagram over IPv4.
	MaxSize = 65000
	// maxDatagram is the largest UDP payload of any family: ParsePayload
	// verifies what arrives even if it is longer than mcrgen would send.
	maxDatagram = 65535
	// Magic marks an mcrgen payload: "MG".
	Magic uint16 = 0x4d47

	offMagic    = 0
	offStream   = 2
	offSeq      = 4
	offSentNano = 12
	offChecksum = 20
)

// Header is the fixed part of a payload.
type Header struct {
	// Stream tells the streams of concurrent senders apart; sequence
	// numbers are tracked per stream.
	Stream uint16
	// Seq numbers the datagrams of a stream from 0.
	Seq uint64
	// SentUnixNano is the sender's wall clock when it sent the datagram.
	SentUnixNano int64
}

// Reasons ParsePayload rejects a payload.
var (
	ErrShort    = errors.New("payload shorter than the 24-byte header")
	ErrLong     = errors.New("payload longer than a UDP datagram")
	ErrMagic    = errors.New("payload does not start with the mcrgen magic")
	ErrChecksum = errors.New("payload checksum mismatch")
	ErrPattern  = errors.New("payload pattern mismatch")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// patternMul spreads sequence numbers over all 64 bits (2^64/φ, odd, so
// distinct sequence numbers give distinct masks).
const patternMul = 0x9e3779b97f4a7c15

// patternBase holds the pattern of sequence number 0, one word per 8 bytes
// after the header; the pattern of sequence n is each word XOR n·patternMul.
// It is fixed (splitmix64 from seed 0) so sender and receiver agree.
var patternBase = func() []uint64 {
	words := make([]uint64, (maxDatagram-HeaderSize+7)/8)
	var x uint64
	for i := range words {
		x += patternMul
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		words[i] = z ^ (z >> 31)
	}
	return words
}()

// FillPayload writes the payload of h into p, all len(p) bytes of it:
// header, pattern and checksum. len(p) must be HeaderSize..MaxSize; it
// panics otherwise, as a short payload cannot carry a header.
func FillPayload(p []byte, h Header) {
	if len(p) < HeaderSize || len(p) > MaxSize {
		panic("mcrgen: payload size out of range")
	}
	binary.BigEndian.PutUint16(p[offMagic:], Magic)
	binary.BigEndian.PutUint16(p[offStream:], h.Stream)
	binary.BigEndian.PutUint64(p[offSeq:], h.Seq)
	binary.BigEndian.PutUint64(p[offSentNano:], uint64(h.SentUnixNano))
	fillPattern(p[HeaderSize:], h.Seq)
	binary.BigEndian.PutUint32(p[offChecksum:], checksum(p))
}

// ParsePayload verifies p and returns its header. The checks, in order:
// length (ErrShort, ErrLong), magic (ErrMagic), checksum (ErrChecksum), and every byte
// after the header against the pattern of the header's sequence number
// (ErrPattern).
func ParsePayload(p []byte) (Header, error) {
	switch {
	case len(p) < HeaderSize:
		return Header{}, ErrShort
	case len(p) > maxDatagram:
		return Header{}, ErrLong
	case binary.BigEndian.Uint16(p[offMagic:]) != Magic:
		return Header{}, ErrMagic
	case binary.BigEndian.Uint32(p[offChecksum:]) != checksum(p):
		return Header{}, ErrChecksum
	}
	h := Header{
		Stream:       binary.BigEndian.Uint16(p[offStream:]),
		Seq:          binary.BigEndian.Uint64(p[offSeq:]),
		SentUnixNano: int64(binary.BigEndian.Uint64(p[offSentNano:])),
	}
	if !matchPattern(p[HeaderSize:], h.Seq) {
		return Header{}, ErrPattern
	}
	return h, nil
}

// checksum is the CRC-32C of the payload without its checksum field.
func checksum(p []byte) uint32 {
	c := crc32.Update(0, castagnoli, p[:offChecksum])
	return crc32.Update(c, castagnoli, p[HeaderSize:])
}

// fillPattern writes the pattern of seq into b, a word at a time.
func fillPattern(b []byte, seq uint64) {
	mask := seq * patternMul
	k := 0
	for ; len(b) >= 8; b = b[8:] {
		binary.LittleEndian.PutUint64(b, patternBase[k]^mask)
		k++
	}
	if len(b) > 0 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], patternBase[k]^mask)
		copy(b, w[:])
	}
}

// matchPattern reports whether b holds the pattern of seq.
func matchPattern(b []byte, seq uint64) bool {
	mask := seq * patternMul
	k := 0
	for ; len(b) >= 8; b = b[8:] {
		if binary.LittleEndian.Uint64(b) != patternBase[k]^mask {
			return false
		}
		k++
	}
	if len(b) == 0 {
		return true
	}
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], patternBase[k]^mask)
	for i := range b {
		if b[i] != w[i] {
			return false
		}
	}
	return true
}
