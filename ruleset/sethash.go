package ruleset

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// SetHash is an order-independent hash of a set of canonical encodings that
// can be maintained incrementally: Add and Remove cost O(len(enc)), so a
// supervisor or worker applying thousands of single-rule changes never
// rehashes the whole set. It combines the elements' xxhash values with
// addition and xor (both commutative) and counts them; two sets differ in
// their SetHash unless their element hashes collide in both sum and xor.
//
// The zero value is the hash of the empty set.
type SetHash struct {
	sum, xor uint64
	n        uint64
}

// Add adds one element.
func (h *SetHash) Add(enc []byte) {
	v := xxhash.Sum64(enc)
	h.sum += v
	h.xor ^= v
	h.n++
}

// Remove removes one element previously added.
func (h *SetHash) Remove(enc []byte) {
	v := xxhash.Sum64(enc)
	h.sum -= v
	h.xor ^= v
	h.n--
}

// Len is the number of elements.
func (h *SetHash) Len() int { return int(h.n) }

// String is the hash as 16 lowercase hex digits.
func (h SetHash) String() string {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], h.sum)
	binary.LittleEndian.PutUint64(b[8:], h.xor)
	binary.LittleEndian.PutUint64(b[16:], h.n)
	return fmt.Sprintf("%016x", xxhash.Sum64(b[:]))
}
