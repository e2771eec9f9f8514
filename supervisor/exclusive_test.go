package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/ingressdrop"
	"github.com/mcrelay/mcr/ruleset"
)

// fakeDropper is an inputDropper that records what each interface drops.
type fakeDropper struct {
	sets   map[int][]string // ifindex → matches, sorted; absent = detached
	fail   map[int]error    // ifindex → what Set returns there
	calls  int
	closed bool
}

func newFakeDropper() *fakeDropper {
	return &fakeDropper{sets: map[int][]string{}, fail: map[int]error{}}
}

func (f *fakeDropper) Set(ifindex int, matches []ingressdrop.Match) error {
	f.calls++
	if err := f.fail[ifindex]; err != nil && len(matches) > 0 {
		return err
	}
	if len(matches) == 0 {
		delete(f.sets, ifindex)
		return nil
	}
	var s []string
	for _, m := range matches {
		s = append(s, m.String())
	}
	slices.Sort(s)
	f.sets[ifindex] = s
	return nil
}

func (f *fakeDropper) Dropped(ifindex int) (uint64, bool) {
	_, ok := f.sets[ifindex]
	return uint64(100 * ifindex), ok
}

func (f *fakeDropper) Close() error {
	f.closed = true
	clear(f.sets)
	return nil
}

func newExclusiveTestMaster(t *testing.T) (*testMaster, *fakeDropper) {
	tm := newTestMaster(t)
	f := newFakeDropper()
	tm.excl = newExclusiveInputs(f)
	return tm, f
}

// TestExclusiveFollowsRules checks that each input interface drops exactly
// the streams of the rules the data plane holds on it, through rule
// changes, config reloads and links that go down, vanish and come back
// with a new ifindex.
func TestExclusiveFollowsRules(t *testing.T) {
	r1 := testRule("r1", "eth9", "239.1.1.1", 5000, "out0")
	r2 := testRule("r2", "eth9", "232.1.1.2", 6000, "out0")
	r2.Input.Source = "10.0.0.9"
	r3 := testRule("r3", "wan", "ff3e::1", 5000, "out0")
	tm, f := newExclusiveTestMaster(t)
	for _, st := range []struct {
		name string
		do   func()
		want map[int][]string
	}{
		{"rules on a missing interface", func() { addRules(r1, r2)(tm) }, map[int][]string{}},
		{"interface appears", func() { up("eth9", 5)(tm) },
			map[int][]string{5: {"232.1.1.2:6000 from 10.0.0.9", "239.1.1.1:5000"}}},
		{"rule removed", func() { tm.remove("r1") },
			map[int][]string{5: {"232.1.1.2:6000 from 10.0.0.9"}}},
		{"interface down: the rule stays in the data plane", func() { down("eth9", 5)(tm) },
			map[int][]string{5: {"232.1.1.2:6000 from 10.0.0.9"}}},
		{"interface deleted", func() { gone("eth9", 5)(tm) }, map[int][]string{}},
		{"recreated with a new ifindex", func() { up("eth9", 8)(tm) },
			map[int][]string{8: {"232.1.1.2:6000 from 10.0.0.9"}}},
		{"config reload moves the rules", func() {
			up("wan", 9)(tm)
			tm.replace([]ruleset.Rule{r1, r3})
		}, map[int][]string{8: {"239.1.1.1:5000"}, 9: {"[ff3e::1]:5000"}}},
		{"changed rule moves to another interface", func() {
			moved := r1
			moved.Input.Interface = "wan"
			tm.replace([]ruleset.Rule{moved, r3})
		}, map[int][]string{9: {"239.1.1.1:5000", "[ff3e::1]:5000"}}},
	} {
		st.do()
		if diff := cmp.Diff(st.want, f.sets); diff != "" {
			t.Errorf("%s: dropped streams per ifindex (-want +got):\n%s", st.name, diff)
		}
	}
	if diff := cmp.Diff(map[string]uint64{"wan": 900}, tm.exclusiveDropped()); diff != "" {
		t.Errorf("exclusiveDropped (-want +got):\n%s", diff)
	}
	tm.closeExclusive()
	if !f.closed {
		t.Error("closeExclusive did not close the dropper")
	}
}

// TestExclusiveFailureKeepsRelaying checks that a dropper that fails on an
// interface (here: no tcx) costs nothing but exclusivity: the rules stay
// active and in the data plane, and the failure is logged once per
// interface, not per rule.
func TestExclusiveFailureKeepsRelaying(t *testing.T) {
	tm, f := newExclusiveTestMaster(t)
	f.fail[5] = fmt.Errorf("attach exclusive input to ifindex 5: %w", ingressdrop.ErrUnsupported)
	up("eth9", 5)(tm)
	up("wan", 6)(tm)
	addRules(testRule("r1", "eth9", "239.1.1.1", 5000, "out0"), testRule("r2", "eth9", "239.1.1.2", 5000, "out0"),
		testRule("r3", "wan", "239.1.1.3", 5000, "out0"))(tm)
	for _, id := range []string{"r1", "r2", "r3"} {
		if state, err := tm.status(t, id); state != "active" || err != "" {
			t.Errorf("rule %s: state %q, error %q; want active, no error", id, state, err)
		}
	}
	if diff := cmp.Diff([]string{"r1", "r2", "r3"}, tm.dp.ids()); diff != "" {
		t.Errorf("data plane rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[int][]string{6: {"239.1.1.3:5000"}}, f.sets); diff != "" {
		t.Errorf("dropped streams (-want +got):\n%s", diff)
	}
	logs := tm.log.String()
	if n := strings.Count(logs, "exclusive input not in effect"); n != 1 {
		t.Errorf("%d warnings for eth9, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "Linux 6.6 or later") || !strings.Contains(logs, "interface=eth9") {
		t.Errorf("warning does not name the interface and the kernel requirement:\n%s", logs)
	}

	// Once the interface accepts the program, the next change attaches it.
	delete(f.fail, 5)
	tm.remove("r2")
	if diff := cmp.Diff(map[int][]string{5: {"239.1.1.1:5000"}, 6: {"239.1.1.3:5000"}}, f.sets); diff != "" {
		t.Errorf("after the failure went away (-want +got):\n%s", diff)
	}
}

// TestExclusiveOffTouchesNothing checks the default: without
// --exclusive-inputs, no dropper exists and rules flow as before.
func TestExclusiveOffTouchesNothing(t *testing.T) {
	tm := newTestMaster(t)
	up("eth9", 5)(tm)
	addRules(testRule("r1", "eth9", "239.1.1.1", 5000, "out0"))(tm)
	if tm.excl != nil || tm.exclusiveDropped() != nil {
		t.Error("exclusive inputs set up without being asked for")
	}
	tm.closeExclusive() // must not panic
}
