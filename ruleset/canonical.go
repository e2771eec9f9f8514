package ruleset

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// The canonical encoding is a flat binary form of a normalised rule. It is
// what ids and ruleset hashes are computed over, so it must not change
// between releases without a reason: a changed encoding changes every
// default id. Format (v = signed varint as encoding/binary.AppendVarint,
// s = uvarint length then the bytes):
//
//	input:  'I' s(interface) s(group) v(port) s(source)
//	rule:   'R' s(id) s(name) input v(len(outputs)) outputs...
//	output: 'O' s(interface) s(group) v(port) v(ttl) s(source) ['P' v(source_port)] ['T']
//
// Every field is length-prefixed or fixed, and the optional output fields
// (present only when not zero, so that the encoding of a rule without them
// is what it was before they existed) start with a tag that no other field
// in that position starts with, so distinct rules never encode to the same
// bytes.

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendInt(b []byte, v int) []byte {
	return binary.AppendVarint(b, int64(v))
}

// appendInput appends the canonical encoding of in, which must be normalised.
func appendInput(b []byte, in *Input) []byte {
	b = append(b, 'I')
	b = appendString(b, in.Interface)
	b = appendString(b, in.Group)
	b = appendInt(b, in.Port)
	return appendString(b, in.Source)
}

func appendOutput(b []byte, o *Output) []byte {
	b = append(b, 'O')
	b = appendString(b, o.Interface)
	b = appendString(b, o.Group)
	b = appendInt(b, o.Port)
	b = appendInt(b, o.TTL)
	b = appendString(b, o.Source)
	if o.SourcePort != 0 {
		b = appendInt(append(b, 'P'), o.SourcePort)
	}
	if o.PreserveSource {
		b = append(b, 'T')
	}
	if o.WhenJoined {
		b = append(b, 'J')
	}
	return b
}

// DefaultID is the id of a rule that has none: 16 lowercase hex digits of
// the xxhash64 of the input's canonical encoding. Inputs that normalise to
// the same value get the same id, in every process and release, so a rule
// added without an id keeps it across restarts and config reloads.
func DefaultID(in Input) string {
	in.normalize()
	return fmt.Sprintf("%016x", xxhash.Sum64(appendInput(nil, &in)))
}

// Canonical returns the rule's canonical encoding: deterministic bytes of
// the normalised rule (with its default id when ID is empty), equal for two
// rules exactly when their normalised forms are equal. r is not modified.
func (r Rule) Canonical() []byte {
	r.Outputs = slices.Clone(r.Outputs) // Normalize writes through the slice
	r.Normalize()
	b := make([]byte, 0, 64+48*len(r.Outputs))
	b = append(b, 'R')
	b = appendString(b, r.ID)
	b = appendString(b, r.Name)
	b = appendInput(b, &r.Input)
	b = appendInt(b, len(r.Outputs))
	for i := range r.Outputs {
		b = appendOutput(b, &r.Outputs[i])
	}
	return b
}

// HashCanonical hashes a set of canonical encodings independently of their
// order: it is the SetHash of encs, 16 lowercase hex digits. The supervisor
// and each worker compare it over their rulesets; callers that encode more
// than a Rule (resolved ifindexes) hash their own encodings with it, and
// callers that change a ruleset one rule at a time keep a SetHash instead,
// which gives the same string. The hash of no encodings is
// "bb3302e8a9608868" (the zero SetHash).
func HashCanonical(encs [][]byte) string {
	var h SetHash
	for _, e := range encs {
		h.Add(e)
	}
	return h.String()
}

// Hash is the ruleset hash of rules: HashCanonical of their Canonical
// encodings. The order of rules does not matter.
func Hash(rules []Rule) string {
	encs := make([][]byte, len(rules))
	for i := range rules {
		encs[i] = rules[i].Canonical()
	}
	return HashCanonical(encs)
}
