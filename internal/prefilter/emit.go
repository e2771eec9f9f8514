package prefilter

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Code generation helpers. Every helper returns a self-contained block whose
// jumps land inside the block or on the instruction right after it, so blocks
// compose by concatenation. Jump offsets count from the instruction after the
// jump, and a conditional jump's offsets are 8 bits: the helpers keep them
// under maxSkip by construction and panic (an internal error, covered by the
// tests' 5,000-entry sets) if one ever is not.

const maxSkip = 255

var (
	accept = bpf.RetConstant{Val: SnapLen}
	drop   = bpf.RetConstant{Val: 0}
)

// skip converts a computed jump distance to a conditional jump offset.
func skip(n int) uint8 {
	if n < 0 || n > maxSkip {
		panic(fmt.Sprintf("filter: internal error: conditional jump of %d instructions", n))
	}
	return uint8(n)
}

// ifThen returns code that runs body when "A cond val" holds and otherwise
// continues after body. A body too long for a conditional jump is skipped
// with an unconditional one, whose offset is 32 bits.
func ifThen(cond bpf.JumpTest, val uint32, body []bpf.Instruction) []bpf.Instruction {
	if len(body) <= maxSkip {
		return append([]bpf.Instruction{bpf.JumpIf{Cond: cond, Val: val, SkipFalse: uint8(len(body))}}, body...)
	}
	return append([]bpf.Instruction{
		bpf.JumpIf{Cond: cond, Val: val, SkipTrue: 1},
		bpf.Jump{Skip: uint32(len(body))},
	}, body...)
}

// span is an inclusive range of values of a 32-bit word or a port.
type span struct{ lo, hi uint32 }

// cost is the number of instructions that test a value against s.
func (s span) cost() int {
	if s.lo == s.hi {
		return 1
	}
	return 2
}

func spansCost(spans []span) int {
	n := 0
	for _, s := range spans {
		n += s.cost()
	}
	return n
}

// onHit says what a membership test does when A is in the set.
type onHit uint8

const (
	hitAccept   onHit = iota // return SnapLen
	hitContinue              // go on after the test's code
)

// member returns code that tests A against spans: a hit accepts or
// continues after the code (per h), a miss drops. The tests are laid out in
// segments of at most maxSkip instructions, each followed by its own hit
// instruction, so that every conditional jump reaches it.
func member(spans []span, h onHit) []bpf.Instruction {
	var segs [][]span
	for start := 0; start < len(spans); {
		end, cost := start, 0
		for ; end < len(spans) && cost+spans[end].cost() <= maxSkip; end++ {
			cost += spans[end].cost()
		}
		segs = append(segs, spans[start:end])
		start = end
	}
	total := len(segs) + spansCost(spans) + 1 // tests, one hit per segment, final drop
	out := make([]bpf.Instruction, 0, total)
	for _, seg := range segs {
		hitAt := len(out) + spansCost(seg)
		for i, s := range seg {
			next := len(out) + s.cost()
			if i == len(seg)-1 {
				next = hitAt + 1 // past this segment's hit instruction
			}
			out = appendTest(out, s, hitAt, next)
		}
		if h == hitAccept {
			out = append(out, accept)
		} else {
			out = append(out, bpf.Jump{Skip: uint32(total - len(out) - 1)})
		}
	}
	return append(out, drop)
}

// appendTest appends the test of A against s: to hitAt when A is in s,
// otherwise to next (both absolute indexes into out).
func appendTest(out []bpf.Instruction, s span, hitAt, next int) []bpf.Instruction {
	pc := len(out)
	if s.lo == s.hi {
		return append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: s.lo,
			SkipTrue: skip(hitAt - pc - 1), SkipFalse: skip(next - pc - 1)})
	}
	return append(out,
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: s.hi, SkipTrue: skip(next - pc - 1)},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: s.lo,
			SkipTrue: skip(hitAt - pc - 2), SkipFalse: skip(next - pc - 2)})
}

// key is one entry of a destination tree: the address words matched
// exactly, then spans on the word after them.
type key struct {
	prefix []uint32
	spans  []span
	// leaf runs when the address matches; spans then holds one value.
	// nil means accept.
	leaf []bpf.Instruction
}

// tree returns code that matches the destination address, loaded word by
// word (network order) from offset off, against keys, which are sorted by
// prefix, have prefixes of equal length, and either all have a leaf or none
// has. An address no key holds is dropped. level is the word to dispatch on;
// callers pass 0.
func tree(off uint32, level int, keys []key) []bpf.Instruction {
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: off + 4*uint32(level), Size: 4}}
	if level == len(keys[0].prefix) {
		if keys[0].leaf == nil {
			var spans []span
			for _, k := range keys {
				spans = append(spans, k.spans...)
			}
			return append(out, member(spans, hitAccept)...)
		}
		for _, k := range keys {
			out = append(out, ifThen(bpf.JumpEqual, k.spans[0].lo, k.leaf)...)
		}
		return append(out, drop)
	}
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].prefix[level] == keys[i].prefix[level] {
			j++
		}
		out = append(out, ifThen(bpf.JumpEqual, keys[i].prefix[level], tree(off, level+1, keys[i:j]))...)
		i = j
	}
	return append(out, drop)
}
