package supervisor

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestFanoutIDs(t *testing.T) {
	probe := &fakeFanout{busy: map[int]bool{}}
	f := newFanoutIDs(probe.probe, 4242)
	a, err := f.get(2)
	if err != nil {
		t.Fatal(err)
	}
	if a < 1 || a > maxFanoutID {
		t.Fatalf("fanout id %d out of 1..65535", a)
	}
	if again, _ := f.get(2); again != a || probe.probes != 1 {
		t.Errorf("second get for ifindex 2: id %d after %d probes, want %d after 1 (remembered)", again, probe.probes, a)
	}
	b, _ := f.get(3)
	if b == a {
		t.Errorf("ifindex 2 and 3 share fanout id %d; a group id is one per namespace", a)
	}
	// Another daemon's pid starts elsewhere.
	other, _ := newFanoutIDs(probe.probe, 4243).get(2)
	if other == a {
		t.Errorf("pids 4242 and 4243 start at the same id %d for ifindex 2", a)
	}
	// A recreated interface gets a new id; the old one is free again.
	f.release(2)
	if _, ok := f.byIf[2]; ok || f.taken[a] {
		t.Errorf("release(2) kept id %d", a)
	}
}

func TestFanoutIDsSkipBusyIDs(t *testing.T) {
	first, _ := newFanoutIDs((&fakeFanout{}).probe, 1).get(7)
	// Every id from the daemon's first choice on is taken by someone else
	// for a while, wrapping past 65535 and skipping 0.
	busy := map[int]bool{}
	for id := first; id <= maxFanoutID; id++ {
		busy[id] = true
	}
	probe := &fakeFanout{busy: busy}
	got, err := newFanoutIDs(probe.probe, 1).get(7)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Errorf("with ids %d..65535 busy: got %d, want 1 (the search wraps and skips 0)", first, got)
	}
}

func TestFanoutIDsErrors(t *testing.T) {
	all := map[int]bool{}
	for id := 1; id <= maxFanoutID; id++ {
		all[id] = true
	}
	_, err := newFanoutIDs((&fakeFanout{busy: all}).probe, 1).get(7)
	if err == nil || !strings.Contains(err.Error(), "all 65535 ids are in use") {
		t.Errorf("all ids busy: %v", err)
	}
	failing := func(int) (bool, error) { return false, syscall.EPERM }
	_, err = newFanoutIDs(failing, 1).get(7)
	if !errors.Is(err, syscall.EPERM) {
		t.Errorf("failing probe: %v, want EPERM", err)
	}
}
