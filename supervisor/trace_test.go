package supervisor

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/tracing"
)

// traceDaemon is a test daemon with tracing: sets records what the
// workers were told, in order.
type traceDaemon struct {
	*testDaemon
	traces *traceSessions
	mu     sync.Mutex
	sets   [][]controlproto.WorkerTrace
}

func startTraceDaemon(t *testing.T) *traceDaemon {
	t.Helper()
	td := &traceDaemon{}
	td.testDaemon = startTestDaemonWith(t, func(d *testDaemon) {
		td.traces = newTraceSessions(d.d.log, func(ts []controlproto.WorkerTrace) {
			td.mu.Lock()
			defer td.mu.Unlock()
			td.sets = append(td.sets, ts)
		}, d.master.has)
		d.d.traces = td.traces
		d.srv.connClosed = td.traces.connClosed
	})
	return td
}

// lastSet is the latest set of traces the workers were told.
func (td *traceDaemon) lastSet() []controlproto.WorkerTrace {
	td.mu.Lock()
	defer td.mu.Unlock()
	if len(td.sets) == 0 {
		return nil
	}
	return td.sets[len(td.sets)-1]
}

func TestTraceCommands(t *testing.T) {
	td := startTraceDaemon(t)
	rc := td.dial(t)
	rc.call(`{"command":"AddRule","rule":` + ruleA + `}`)
	steps := []struct{ name, req, want string }{
		{"unknown rule", `{"command":"EnableTrace","id":"nosuch"}`, errReply("not_found", `no rule "nosuch"`)},
		{"not traced", `{"command":"GetTrace","id":"a"}`, `{"ok":true,"result":{"id":"a","enabled":false,"next":0}}`},
		{"enable", `{"command":"EnableTrace","id":"a","limit":3,"snaplen":2}`,
			`{"ok":true,"result":{"id":"a","enabled":true,"limit":3,"snaplen":2,"next":0}}`},
	}
	for _, s := range steps {
		if got := rc.call(s.req); got != s.want {
			t.Errorf("%s: got  %s\nwant %s", s.name, got, s.want)
		}
	}
	if diff := cmp.Diff([]controlproto.WorkerTrace{{ID: "a", Limit: 3, Snaplen: 2}}, td.lastSet()); diff != "" {
		t.Errorf("workers told (-want +got):\n%s", diff)
	}

	// Five events into a buffer of three: the reader from 0 missed two.
	ev := func(size int) tracing.Event {
		return tracing.Event{UnixNano: 1, Worker: 1, Rule: "a", Kind: tracing.Received, Size: size, Data: []byte("xyz")}
	}
	td.traces.ingest([]tracing.Event{ev(1), ev(2), ev(3), ev(4), ev(5),
		{Rule: "a", Kind: tracing.Lost, Count: 7}, {Rule: "b", Kind: tracing.Received}})
	var res controlproto.TraceResult
	c := td.client(t)
	if err := c.Call(t.Context(), controlproto.Request{Command: controlproto.CmdGetTrace, ID: "a"}, &res); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, e := range res.Events {
		sizes = append(sizes, e.Size)
		if string(e.Data) != "xy" {
			t.Errorf("event data %q, want the snaplen of 2: \"xy\"", e.Data)
		}
	}
	if diff := cmp.Diff([]int{3, 4, 5}, sizes); diff != "" || res.Missed != 2 || res.Next != 5 || res.Lost != 7 {
		t.Errorf("GetTrace: sizes %v, missed %d, next %d, lost %d; want [3 4 5], 2, 5, 7", sizes, res.Missed, res.Next, res.Lost)
	}
	if got := rc.call(`{"command":"GetTrace","id":"a","since":5}`); got != `{"ok":true,"result":{"id":"a","enabled":true,"limit":3,"snaplen":2,"next":5,"lost":7}}` {
		t.Errorf("GetTrace since the newest: %s", got)
	}

	// A second connection joins; the trace ends when both are gone: one
	// disables, the other closes.
	if err := c.Call(t.Context(), controlproto.Request{Command: controlproto.CmdEnableTrace, ID: "a"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Limit != 1000 || res.Snaplen != 2 {
		t.Errorf("joined trace: limit %d snaplen %d, want the larger: 1000 and 2", res.Limit, res.Snaplen)
	}
	if got := rc.call(`{"command":"DisableTrace","id":"a"}`); got != `{"ok":true,"result":{"id":"a","enabled":true,"limit":1000,"snaplen":2,"next":5,"lost":7}}` {
		t.Errorf("DisableTrace with another holder: %s", got)
	}
	c.Close()
	netnstest.WaitFor(t, 5*time.Second, "the trace to end with its connection", func() bool { return len(td.lastSet()) == 0 })
	if got := rc.call(`{"command":"GetTrace","id":"a"}`); got != `{"ok":true,"result":{"id":"a","enabled":false,"next":0}}` {
		t.Errorf("GetTrace after the end: %s", got)
	}
}

func TestTraceLimitOfRules(t *testing.T) {
	td := startTraceDaemon(t)
	rc := td.dial(t)
	for i := range controlproto.MaxTracedRules + 1 {
		r := strings.NewReplacer(`"a"`, fmt.Sprintf(`"r%d"`, i), "239.1.1.1", fmt.Sprintf("239.1.1.%d", i+10)).Replace(ruleA)
		rc.call(`{"command":"AddRule","rule":` + r + `}`)
		got := rc.call(fmt.Sprintf(`{"command":"EnableTrace","id":"r%d"}`, i))
		if i < controlproto.MaxTracedRules && !strings.Contains(got, `"enabled":true`) {
			t.Fatalf("trace %d: %s", i, got)
		}
		if i == controlproto.MaxTracedRules {
			if want := errReply("unavailable", "16 rules are traced already, the most at once; end one of their traces first"); got != want {
				t.Errorf("trace beyond the limit: got %s\nwant %s", got, want)
			}
		}
	}
	if got := len(td.lastSet()); got != controlproto.MaxTracedRules {
		t.Errorf("workers trace %d rules, want %d", got, controlproto.MaxTracedRules)
	}
}
