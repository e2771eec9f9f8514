package worker

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/prefilter"
)

func TestRuleSocketsFollowRules(t *testing.T) {
	f := newFakeSockets()
	db := newRuleDB(f, testLogger(nil))
	step := func(name string, want []string, change func()) {
		t.Helper()
		change()
		db.commit()
		if diff := cmp.Diff(want, f.take()); diff != "" {
			t.Errorf("%s: socket operations (-want +got):\n%s", name, diff)
		}
	}
	a := wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3")
	b := wrule("b", 2, "239.1.1.2:5002", "239.2.2.3:6000@3 ttl 9", "[ff3e::2]:6000@4", "239.2.2.4:6000@3 port 5001")
	step("first rule opens its input and output", []string{
		"open egress IPv4 socket from any port on ifindex 3",
		"open input 2 fanout 7 [239.1.1.1:5001]",
	}, func() { db.add(a) })
	step("a second rule on the input re-filters it, shares the identity of the first's output and opens its others", []string{
		"open egress IPv6 socket from any port on ifindex 4",
		"open egress IPv4 socket from port 5001 on ifindex 3",
		"filter input 2 [239.1.1.1:5001 239.1.1.2:5002]",
	}, func() { db.add(b) })
	if len(db.egress) != 3 || len(db.dests) != 4 {
		t.Errorf("%d egress sockets and %d dests, want 3 for 3 identities and 4 for 4 destinations", len(db.egress), len(db.dests))
	}
	step("re-adding an identical rule changes nothing", nil, func() { db.add(a) })
	step("removing a rule re-filters and closes what only it used", []string{
		"close egress IPv6 socket from any port on ifindex 4",
		"close egress IPv4 socket from port 5001 on ifindex 3",
		"filter input 2 [239.1.1.1:5001]",
	}, func() { db.remove("b") })
	step("replacing all rules keeps shared sockets open", []string{
		"close input 2",
		"open input 5 fanout 7 [239.1.1.9:5009]",
	}, func() { db.replaceAll([]controlproto.WorkerRule{wrule("c", 5, "239.1.1.9:5009", "239.2.2.9:6000@3")}) })
	step("closing releases everything", []string{
		"close egress IPv4 socket from any port on ifindex 3",
		"close input 5",
	}, func() { db.close() })
	if len(db.inputs) != 0 || len(db.egress) != 0 || len(db.dests) != 0 || db.table.Len() != 0 {
		t.Errorf("after close: %d inputs, %d egress sockets, %d dests, %d table keys; want none",
			len(db.inputs), len(db.egress), len(db.dests), db.table.Len())
	}
}

func TestRulesetHash(t *testing.T) {
	rules := []controlproto.WorkerRule{
		wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"),
		wrule("b", 2, "239.1.1.2:5001", "239.2.2.2:6000@3"),
		wrule("c", 3, "[ff3e::1]:5001", "[ff3e::2]:6000@3"),
	}
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	if got, want := db.Hash(), controlproto.HashWorkerRules(nil); got != want {
		t.Errorf("empty ruleset hash %s, want %s", got, want)
	}
	for _, r := range rules {
		db.add(r)
	}
	if got, want := db.Hash(), controlproto.HashWorkerRules(rules); got != want {
		t.Errorf("hash after adds %s, want %s", got, want)
	}
	changed := wrule("b", 2, "239.1.1.2:5001", "239.2.2.9:6000@3")
	db.add(changed)
	want := controlproto.HashWorkerRules([]controlproto.WorkerRule{rules[0], changed, rules[2]})
	if got := db.Hash(); got != want {
		t.Errorf("hash after replacing b %s, want %s", got, want)
	}
	db.remove("a")
	db.replaceAll(append([]controlproto.WorkerRule(nil), rules[1:]...))
	if got, want := db.Hash(), controlproto.HashWorkerRules(rules[1:]); got != want {
		t.Errorf("hash after replaceAll %s, want %s", got, want)
	}
}

func TestChangedRuleKeepsCounters(t *testing.T) {
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3", "239.3.3.3:6000@3"))
	r := db.byID["a"]
	r.packetsIn, r.bytesIn = 10, 1000
	r.outputs[0].cnt.PacketsOut = 10
	r.outputs[1].cnt.PacketsOut = 9
	db.replaceAll([]controlproto.WorkerRule{wrule("a", 2, "239.1.1.1:5001", "239.3.3.3:6000@3", "239.4.4.4:6000@3")})
	r = db.byID["a"]
	got := r.counters("")
	if got.PacketsIn != 10 || got.BytesIn != 1000 {
		t.Errorf("rule counters %d/%d after the change, want 10/1000", got.PacketsIn, got.BytesIn)
	}
	if got.Outputs[0].PacketsOut != 9 || got.Outputs[1].PacketsOut != 0 {
		t.Errorf("output counters %+v: want 239.3.3.3 to keep 9 and the new output to start at 0", got.Outputs)
	}
	if !r.changedSince("") {
		t.Error("a rule whose outputs changed must be in the next snapshot")
	}
}

func TestDuplicateInputGetsError(t *testing.T) {
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("b", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.3.3.3:6000@3"))
	db.commit()
	if got, want := db.byID["b"].errorText(), `input: same input as rule "a"`; got != want {
		t.Errorf("error of the duplicate: %q, want %q", got, want)
	}
	if db.byID["a"].errorText() != "" || db.table.Len() != 1 {
		t.Errorf("rule a: error %q, table keys %d; want no error and 1 key", db.byID["a"].errorText(), db.table.Len())
	}
}

func TestRetryReopensFailedSockets(t *testing.T) {
	f := newFakeSockets()
	f.failOut = map[string]error{"IPv4 socket from any port on ifindex 3": errFake}
	f.failInput = map[int]error{2: errFake}
	var logs bytes.Buffer
	db := newRuleDB(f, testLogger(&logs))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	want := "input if2: fake failure; outputs[0] 239.2.2.2:6000@if3: fake failure"
	if got := db.byID["a"].errorText(); got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	db.retry()
	db.retry()
	if n := bytes.Count(logs.Bytes(), []byte("fake failure")); n != 2 {
		t.Errorf("logged the failures %d times over three attempts, want once each:\n%s", n, logs.String())
	}
	f.failOut, f.failInput = nil, nil
	f.take()
	db.retry()
	if diff := cmp.Diff([]string{
		"open egress IPv4 socket from any port on ifindex 3",
		"open input 2 fanout 7 [239.1.1.1:5001]",
	}, f.take()); diff != "" {
		t.Errorf("retry (-want +got):\n%s", diff)
	}
	if got := db.byID["a"].errorText(); got != "" {
		t.Errorf("error after a successful retry: %q", got)
	}
}

// TestUnguardedInputStopsRelaying checks that an input whose socket was
// left without any filter (not even the guard against VLAN-tagged frames)
// is closed, shows the error, and is opened again by the retry.
func TestUnguardedInputStopsRelaying(t *testing.T) {
	f := newFakeSockets()
	db := newRuleDB(f, testLogger(nil))
	db.add(wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	db.commit()
	f.failFilter = map[int]error{2: fmt.Errorf("replace filter on ifindex 2: %w: %w", prefilter.ErrUnguarded, syscall.ENOMEM)}
	f.take()
	db.add(wrule("b", 2, "239.1.1.2:5001", "239.2.2.2:6000@3"))
	db.commit()
	if diff := cmp.Diff([]string{
		"filter input 2 [239.1.1.1:5001 239.1.1.2:5001]",
		"close input 2",
	}, f.take()); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	want := "input if2: replace filter on ifindex 2: socket left without any filter, VLAN-tagged frames not dropped: cannot allocate memory"
	if got := db.byID["a"].errorText(); got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	f.failFilter = nil
	db.retry()
	if diff := cmp.Diff([]string{"open input 2 fanout 7 [239.1.1.1:5001 239.1.1.2:5001]"}, f.take()); diff != "" {
		t.Errorf("retry (-want +got):\n%s", diff)
	}
	if got := db.byID["a"].errorText(); got != "" {
		t.Errorf("error after the retry: %q", got)
	}
}

func TestUnservableRules(t *testing.T) {
	tests := []struct {
		name string
		wr   controlproto.WorkerRule
		want string
	}{
		{"output interface missing", wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@0"),
			"outputs[0] 239.2.2.2:6000@if0: interface if0 does not exist"},
		{"bad input group", wrule("a", 2, "nonsense:5001", "239.2.2.2:6000@3"),
			`input: key for input on if2: group: ParseAddr("nonsense"): unable to parse IP`},
		{"input interface missing", wrule("a", 0, "239.1.1.1:5001", "239.2.2.2:6000@3"),
			"input: key for input on if0: ifindex 0 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newRuleDB(newFakeSockets(), testLogger(nil))
			db.add(tc.wr)
			db.commit()
			if got := db.byID["a"].errorText(); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}
