package mcrgen

import "testing"

func TestSeqTracker(t *testing.T) {
	const w = seqWindow
	seq := func(from, to uint64) []uint64 {
		var s []uint64
		for n := from; n <= to; n++ {
			s = append(s, n)
		}
		return s
	}
	cat := func(parts ...[]uint64) []uint64 {
		var s []uint64
		for _, p := range parts {
			s = append(s, p...)
		}
		return s
	}
	tests := []struct {
		name                        string
		in                          []uint64
		lost, duplicates, reordered uint64
	}{
		{name: "nothing", in: nil},
		{name: "in order", in: seq(0, 9)},
		{name: "gap", in: []uint64{0, 1, 2, 5, 6}, lost: 2},
		{name: "duplicate", in: []uint64{0, 1, 1, 2}, duplicates: 1},
		{name: "duplicate of the newest", in: []uint64{0, 1, 2, 2, 2}, duplicates: 2},
		{name: "swap", in: []uint64{0, 2, 1, 3}, reordered: 1},
		{name: "late then duplicated", in: []uint64{0, 2, 1, 1, 3}, reordered: 1, duplicates: 1},
		{name: "gap partly filled late", in: []uint64{0, 4, 2}, reordered: 1, lost: 2},
		{name: "starts mid-stream", in: []uint64{100, 101, 103}, lost: 1},
		{name: "older than the first", in: []uint64{100, 101, 98}, reordered: 1, lost: 1},
		{name: "jump beyond the window", in: []uint64{0, 100_000, 100_000}, lost: 99_999, duplicates: 1},
		{name: "window slot reused", in: []uint64{0, w, w}, lost: w - 1, duplicates: 1},
		{name: "long run then duplicate", in: cat(seq(0, w+10), []uint64{w + 5}), duplicates: 1},
		{name: "just inside the window", in: cat(seq(0, w+10), []uint64{11}), duplicates: 1},
		{name: "too old to tell", in: cat(seq(0, w+10), []uint64{10}), reordered: 1},
		{name: "too old, missing", in: []uint64{0, w + 10, 5}, reordered: 1, lost: w + 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seqTracker
			for _, n := range tt.in {
				s.add(n)
			}
			if s.lost() != tt.lost || s.duplicates != tt.duplicates || s.reordered != tt.reordered {
				t.Errorf("lost %d, duplicates %d, reordered %d; want %d, %d, %d",
					s.lost(), s.duplicates, s.reordered, tt.lost, tt.duplicates, tt.reordered)
			}
		})
	}
}
