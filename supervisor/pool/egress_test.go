package pool

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/internal/syncbuf"
	"github.com/mcrelay/mcr/ruleset"
)

// fakeEgressKernel records what heldEgress asks of the kernel.
type fakeEgressKernel struct {
	ops    []string
	nextFD int
	fail   map[string]error // open errors by EgressKey.String()
	timers []func()         // linger expiries not yet fired
}

func (k *fakeEgressKernel) egressOps() EgressOps {
	return EgressOps{
		Open: func(key relaysock.EgressKey) (int, error) {
			k.ops = append(k.ops, "open "+key.String())
			if err := k.fail[key.String()]; err != nil {
				return -1, err
			}
			k.nextFD++
			return k.nextFD, nil
		},
		Port: func(fd int) int { return 40000 + fd },
		Dup: func(fd int) (int, error) {
			k.ops = append(k.ops, fmt.Sprintf("dup %d", fd))
			return 100 + fd, nil
		},
		Close: func(fd int) { k.ops = append(k.ops, fmt.Sprintf("close %d", fd)) },
	}
}

type fakeTimer struct{ stopped *bool }

func (t fakeTimer) Stop() bool { *t.stopped = true; return true }

func (k *fakeEgressKernel) after(_ time.Duration, f func()) stopper {
	stopped := new(bool)
	k.timers = append(k.timers, func() {
		if !*stopped {
			f()
		}
	})
	return fakeTimer{stopped}
}

// fire runs the linger expiries due so far.
func (k *fakeEgressKernel) fire() {
	timers := k.timers
	k.timers = nil
	for _, f := range timers {
		f()
	}
}

func (k *fakeEgressKernel) take() []string {
	ops := k.ops
	k.ops = nil
	return ops
}

func egressRule(id string, outs ...ruleset.Output) controlproto.WorkerRule {
	wr := controlproto.WorkerRule{Rule: ruleset.Rule{ID: id, Outputs: outs}}
	for range outs {
		wr.OutputIfIndex = append(wr.OutputIfIndex, 3)
	}
	return wr
}

// TestHeldEgress follows the egress sockets the supervisor holds through
// rules that come, change and go: one socket per identity whatever the
// outputs on it, a dup for each worker request, a failed open tried again
// on request, a linger before the last output's socket closes.
func TestHeldEgress(t *testing.T) {
	k := &fakeEgressKernel{fail: map[string]error{"IPv4 socket from port 5001 on ifindex 3": syscall.EADDRINUSE}}
	h := newHeldEgress(testLogger(&syncbuf.Buffer{}), k.egressOps())
	h.after = k.after
	any4 := relaysock.EgressKey{IfIndex: 3}
	port := relaysock.EgressKey{IfIndex: 3, Port: 5001}
	step := func(name string, want []string) {
		t.Helper()
		if diff := cmp.Diff(want, k.take()); diff != "" {
			t.Errorf("%s: kernel operations (-want +got):\n%s", name, diff)
		}
	}

	a := egressRule("a", ruleset.Output{Interface: "out0", Group: "239.2.2.2", Port: 6000},
		ruleset.Output{Interface: "out0", Group: "239.2.2.3", Port: 6000, TTL: 9})
	h.add(a)
	step("two outputs on one identity", []string{"open IPv4 socket from any port on ifindex 3"})
	for range 2 {
		if fd, err := h.dup(any4); err != nil || fd != 101 {
			t.Errorf("dup for a worker: %d, %v; want 101 (a dup of socket 1)", fd, err)
		}
	}
	step("two workers ask", []string{"dup 1", "dup 1"})

	b := egressRule("b", ruleset.Output{Interface: "out0", Group: "239.2.2.4", Port: 6000, SourcePort: 5001})
	h.add(b)
	step("a port in use", []string{"open IPv4 socket from port 5001 on ifindex 3"})
	want := "bind to source port 5001: address already in use"
	k.fail = map[string]error{"IPv4 socket from port 5001 on ifindex 3": fmt.Errorf("bind to source port 5001: %w", syscall.EADDRINUSE)}
	if _, err := h.dup(port); err == nil || err.Error() != want {
		t.Errorf("dup while the port is in use: %v, want %q", err, want)
	}
	k.fail = nil
	if fd, err := h.dup(port); err != nil || fd != 102 {
		t.Errorf("dup once the port is free: %d, %v; want 102", fd, err)
	}
	step("retries on request", []string{"open IPv4 socket from port 5001 on ifindex 3",
		"open IPv4 socket from port 5001 on ifindex 3", "dup 2"})

	none := relaysock.EgressKey{IfIndex: 4}
	if _, err := h.dup(none); !errors.Is(err, syscall.EPERM) || !errors.Is(err, errNotHeld) ||
		!strings.HasPrefix(err.Error(), "refused: the IPv4 socket from any port on ifindex 4") {
		t.Errorf("dup of a socket no output needs: %v, want refused with EPERM", err)
	}

	h.remove(a)
	if _, err := h.dup(any4); !errors.Is(err, errNotHeld) {
		t.Errorf("dup after the last output went: %v, want refused", err)
	}
	h.add(a)
	k.fire()
	step("a rule removed and added again keeps its socket", nil)
	h.remove(a)
	k.fire()
	step("the last output's socket closes after the linger", []string{"close 1"})
	h.add(a)
	step("and opens afresh", []string{"open IPv4 socket from any port on ifindex 3"})

	h.close()
	got := k.take()
	if diff := cmp.Diff([]string{"close 2", "close 3"}, sortedCopy(got)); diff != "" {
		t.Errorf("close (-want +got):\n%s", diff)
	}
	h.add(a)
	step("nothing opens after close", nil)
}

func sortedCopy(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
