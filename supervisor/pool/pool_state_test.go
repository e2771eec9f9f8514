package pool

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestQueueStateNext is the command queue's state machine, every state by
// every event.
func TestQueueStateNext(t *testing.T) {
	events := []queueEvent{evFrames, evSync, evShutdown, evClose, evTake, evWritten}
	names := map[queueEvent]string{evFrames: "frames", evSync: "sync", evShutdown: "shutdown",
		evClose: "close", evTake: "take", evWritten: "written"}
	// want[state] lists the next state for each of events, in order.
	want := map[queueState][]queueState{
		queueIdle:     {queueFrames, queueSync, queueShutdown, queueClosed, queueIdle, queueIdle},
		queueFrames:   {queueFrames, queueSync, queueShutdown, queueClosed, queueWriting, queueFrames},
		queueSync:     {queueSync, queueSync, queueShutdown, queueClosed, queueWriting, queueSync},
		queueWriting:  {queueFrames, queueSync, queueShutdown, queueClosed, queueWriting, queueIdle},
		queueShutdown: {queueShutdown, queueShutdown, queueShutdown, queueClosed, queueClosed, queueShutdown},
		queueClosed:   {queueClosed, queueClosed, queueClosed, queueClosed, queueClosed, queueClosed},
	}
	for from, nexts := range want {
		for i, e := range events {
			if got := from.next(e); got != nexts[i] {
				t.Errorf("%v on %s = %v, want %v", from, names[e], got, nexts[i])
			}
		}
	}
}

// TestCmdQueueSettled follows a queue through a worker's life as the pool
// and the writer drive it, and asks at each snapshot whether a wrong hash
// could still be an update in flight.
func TestCmdQueueSettled(t *testing.T) {
	type step struct {
		name string
		do   func(q *cmdQueue)
		// at a snapshot after the step (drained: the worker read all
		// that was written), settled must say want.
		drained, want bool
		state         queueState
	}
	frame := [][]byte{[]byte("x")}
	take := func(q *cmdQueue) { q.on(evWritten); q.on(evTake) }
	steps := []step{
		{"new life: SyncRules due", func(q *cmdQueue) { q.requestSync() }, false, false, queueSync},
		{"writer takes it", take, false, false, queueWriting},
		{"written, not read yet", func(q *cmdQueue) { q.on(evWritten) }, false, false, queueIdle},
		{"read: quiet from here", func(*cmdQueue) {}, true, false, queueIdle},
		{"still quiet: settled", func(*cmdQueue) {}, true, true, queueIdle},
		{"an update queued", func(q *cmdQueue) { q.push(frame) }, true, false, queueFrames},
		{"taken and written", func(q *cmdQueue) { take(q); q.on(evWritten) }, true, false, queueIdle},
		{"read: settled again", func(*cmdQueue) {}, true, true, queueIdle},
		{"update while writing", func(q *cmdQueue) { take(q); q.push(frame) }, true, false, queueFrames},
		{"shutdown drops it", func(q *cmdQueue) { q.shutdown() }, true, false, queueShutdown},
		{"no more updates", func(q *cmdQueue) { q.push(frame); q.requestSync() }, true, false, queueShutdown},
		{"Shutdown taken: closed", take, true, false, queueClosed},
	}
	q := newCmdQueue(queueLimit{frames: 10, bytes: 1 << 20})
	for _, st := range steps {
		st.do(&q)
		if q.state != st.state {
			t.Fatalf("%s: state %v, want %v", st.name, q.state, st.state)
		}
		if q.state != queueFrames && len(q.frames) != 0 {
			t.Errorf("%s: %d frames kept in %v", st.name, len(q.frames), q.state)
		}
		if got := q.settled(st.drained); got != st.want {
			t.Errorf("%s: settled(%v) = %v, want %v", st.name, st.drained, got, st.want)
		}
	}
}

// TestCmdQueueOverflow: past its limit the queue drops its frames for one
// SyncRules, reported once, and takes no frames while the SyncRules is due.
func TestCmdQueueOverflow(t *testing.T) {
	q := newCmdQueue(queueLimit{frames: 2, bytes: 1 << 20})
	frame := [][]byte{[]byte("x")}
	var got []bool
	for range 4 {
		got = append(got, q.push(frame))
	}
	if diff := cmp.Diff([]bool{false, false, true, false}, got); diff != "" {
		t.Errorf("overflowed (-want +got):\n%s", diff)
	}
	if q.state != queueSync || len(q.frames) != 0 || q.bytes != 0 {
		t.Errorf("after overflow: %v with %d frames of %d bytes, want sync and none", q.state, len(q.frames), q.bytes)
	}
}

// TestPoolStateMoves is the pool's life: the moves the diagram has, and no
// other.
func TestPoolStateMoves(t *testing.T) {
	all := []poolState{poolNew, poolStarted, poolStopping, poolKilling, poolStopped}
	allowed := map[[2]poolState]bool{
		{poolNew, poolStarted}:      true,
		{poolNew, poolStopped}:      true,
		{poolStarted, poolStopping}: true,
		{poolStopping, poolKilling}: true,
		{poolStopping, poolStopped}: true,
		{poolKilling, poolStopped}:  true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := from.can(to); got != allowed[[2]poolState{from, to}] {
				t.Errorf("%v → %v allowed = %v", from, to, got)
			}
		}
		if from.can(0) || poolState(0).can(from) {
			t.Errorf("the invalid zero state moves to or from %v", from)
		}
	}
	for s, stopping := range map[poolState]bool{poolNew: false, poolStarted: false, poolStopping: true, poolKilling: true, poolStopped: true, 0: false} {
		if s.stopping() != stopping {
			t.Errorf("%v.stopping() = %v, want %v", s, s.stopping(), stopping)
		}
	}
}

// TestStateNames: the states keep their names on the wire.
func TestStateNames(t *testing.T) {
	got := []string{StateStarting.String(), StateRunning.String(), StateBackoff.String(), StateStopped.String()}
	want := []string{"starting", "running", "backoff", "stopped"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state names (-want +got):\n%s", diff)
	}
}
