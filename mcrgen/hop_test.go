package mcrgen

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHopper sends 130 datagrams in batches of up to 64, hopping between
// CPUs 0 and 1 every 50: no batch spans two CPUs, and the thread moves
// only when the CPU changes.
func TestHopper(t *testing.T) {
	h := newHopper([]int{0, 1}, 50)
	var moves []int
	h.pin = func(cpu int) error { moves = append(moves, cpu); return nil }
	type batch struct{ From, N, CPU int }
	var got []batch
	for sent := uint64(0); sent < 130; {
		n := h.batch(sent, int(min(64, 130-sent)))
		if err := h.place(sent); err != nil {
			t.Fatal(err)
		}
		got = append(got, batch{int(sent), n, h.cur})
		sent += uint64(n)
	}
	want := []batch{{0, 50, 0}, {50, 50, 1}, {100, 30, 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1, 0}, moves); diff != "" {
		t.Errorf("moves (-want +got):\n%s", diff)
	}
	if newHopper([]int{3}, 0).every != DefaultHopEvery {
		t.Error("hop-every 0 does not mean the default")
	}
}
