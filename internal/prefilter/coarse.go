package prefilter

import (
	"cmp"
	"slices"
)

// coarse is a family's set in the form "destination in some address ranges
// and port in some port ranges". Built from the destinations it is exact
// when they all want the same ports; reducing it (merging ranges, checking
// fewer address words) keeps it a superset of the destinations.
type coarse struct {
	// depth is how many leading address words keys match exactly; their
	// spans apply to the word after those.
	depth int
	keys  []key // leaf nil, sorted by prefix
	ports []span
	// lossy is set when the form accepts more than the destinations.
	lossy bool
}

func newCoarse(dests []dest) coarse {
	c := coarse{depth: len(dests[0].words) - 1}
	var ports []uint16
	for _, d := range dests {
		ports = append(ports, d.ports...)
		c.lossy = c.lossy || !slices.Equal(d.ports, dests[0].ports)
	}
	slices.Sort(ports)
	c.ports = portSpans(slices.Compact(ports))
	for i := 0; i < len(dests); {
		prefix := dests[i].words[:c.depth]
		var vals []uint32
		for ; i < len(dests) && slices.Equal(dests[i].words[:c.depth], prefix); i++ {
			vals = append(vals, dests[i].words[c.depth])
		}
		c.keys = append(c.keys, key{prefix: prefix, spans: runs(vals)})
	}
	return c
}

// component is one reducible part of a coarse form: about how many
// instructions it costs, and how to cut about excess of them.
type component struct {
	cost   int
	reduce func(excess int)
}

// components lists the parts of c that can still be reduced: the port
// ranges, the address ranges, and the exact match on leading address words.
// A range reduction cuts at most half of the part's cost, so that when
// several parts are large the cut is shared among them.
func (c *coarse) components() []component {
	var out []component
	if len(c.ports) > 1 {
		cost := spansCost(c.ports)
		out = append(out, component{cost, func(excess int) {
			c.ports = shrink(c.ports, cost-min(excess, cost/2))
			c.lossy = true
		}})
	}
	cost, several := 0, false
	for _, k := range c.keys {
		cost += spansCost(k.spans)
		several = several || len(k.spans) > 1
	}
	if several {
		out = append(out, component{cost, func(excess int) { c.shrinkSpans(cost, cost-min(excess, cost/2)) }})
	}
	if c.depth > 0 {
		// Each tree node costs a load, a compare and a drop.
		out = append(out, component{3 * c.nodes(), func(int) { c.shallower() }})
	}
	return out
}

// shrinkSpans cuts the address spans, which cost total instructions, to
// about target, sharing the cut among keys in proportion to their cost.
func (c *coarse) shrinkSpans(total, target int) {
	for i := range c.keys {
		k := &c.keys[i]
		k.spans = shrink(k.spans, spansCost(k.spans)*target/total)
	}
	c.lossy = true
}

// nodes counts the tree nodes above the spans: distinct prefixes of each
// length 1..depth.
func (c *coarse) nodes() int {
	n := 0
	for l := 1; l <= c.depth; l++ {
		for i, k := range c.keys {
			if i == 0 || !slices.Equal(k.prefix[:l], c.keys[i-1].prefix[:l]) {
				n++
			}
		}
	}
	return n
}

// shallower matches one address word fewer exactly: keys sharing all but
// their last prefix word merge into one key with spans over that word, and
// the words after it are no longer checked.
func (c *coarse) shallower() {
	d := c.depth - 1
	var keys []key
	for i := 0; i < len(c.keys); {
		prefix := c.keys[i].prefix[:d]
		var vals []uint32
		for ; i < len(c.keys) && slices.Equal(c.keys[i].prefix[:d], prefix); i++ {
			vals = append(vals, c.keys[i].prefix[d])
		}
		keys = append(keys, key{prefix: prefix, spans: runs(vals)})
	}
	c.keys, c.depth, c.lossy = keys, d, true
}

// shrink merges the closest neighbours among sorted, disjoint spans, smallest
// gap first, until testing them costs at most target instructions or one
// span is left. The result covers every value spans covered.
func shrink(spans []span, target int) []span {
	n := len(spans)
	cost := spansCost(spans)
	if n < 2 || cost <= target {
		return spans
	}
	gaps := make([]int, n-1) // gaps[i] lies between spans i and i+1
	for i := range gaps {
		gaps[i] = i
	}
	slices.SortStableFunc(gaps, func(a, b int) int {
		return cmp.Compare(spans[a+1].lo-spans[a].hi, spans[b+1].lo-spans[b].hi)
	})
	// Merged groups are runs of span indexes; first and last map each
	// run's last index to its first and its first to its last.
	first, last := make([]int, n), make([]int, n)
	for i := range spans {
		first[i], last[i] = i, i
	}
	groupCost := func(a, b int) int {
		if a == b {
			return spans[a].cost()
		}
		return 2
	}
	for _, g := range gaps {
		if cost <= target {
			break
		}
		a, b := first[g], last[g+1]
		cost += 2 - groupCost(a, g) - groupCost(g+1, b)
		last[a], first[b] = b, a
	}
	var out []span
	for a := 0; a < n; a = last[a] + 1 {
		out = append(out, span{spans[a].lo, spans[last[a]].hi})
	}
	return out
}
