package pool

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/internal/syncbuf"
)

// acceptAll is a prefilter that passes every packet.
var acceptAll = []bpf.RawInstruction{{Op: 0x06, K: 0xffff}} // ret #0xffff

// TestHeldInputsLife follows an input's sockets: opened for every slot on
// the first request, the same sockets for every later request of a slot,
// kept while a rule uses the input, and after that until every worker
// holds the ruleset without it (or heldCloseAfter).
func TestHeldInputsLife(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "held")
	netnstest.Veth(t, ns, "a0", nil, ns, "b0", nil)
	ifindex := ns.IfIndex("b0")
	var log syncbuf.Buffer
	h := newHeldInputs(relaysock.FanoutHash, []int{0, 1}, testLogger(&log), nil)
	req := &relaysock.Ingress{IfIndex: ifindex, FanoutID: 4201, Filter: acceptAll}

	inode := func(fd int) uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		return st.Ino
	}
	var first, again, other uint64
	idFree := func() bool {
		var free bool
		if err := ns.Do(func() (err error) { free, err = relaysock.FanoutIDFree(4201); return err }); err != nil {
			t.Fatal(err)
		}
		return free
	}
	err := ns.Do(func() error {
		fd, err := h.dup(0, req)
		if err != nil {
			return err
		}
		first = inode(fd)
		fd, err = h.dup(0, req)
		if err != nil {
			return err
		}
		again = inode(fd)
		fd, err = h.dup(1, req)
		if err != nil {
			return err
		}
		other = inode(fd)
		if _, err := h.dup(2, req); err == nil || !strings.Contains(err.Error(), "no member for worker 2") {
			return fmt.Errorf("dup for slot 2 of 2: %v, want an error naming the slot", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if first != again || first == other {
		t.Errorf("slot 0 got sockets %d then %d, slot 1 %d: want the same one for a slot, another for the other", first, again, other)
	}
	if n := strings.Count(log.String(), "input sockets open"); n != 1 {
		t.Errorf("input sockets opened %d times, want once:\n%s", n, log.String())
	}

	now := time.Now()
	used := func(inputKey) bool { return true }
	unused := func(inputKey) bool { return false }
	h.sweep(now, used, func() bool { return true })
	h.sweep(now, unused, func() bool { return false })
	h.sweep(now.Add(heldCloseAfter/2), unused, func() bool { return false })
	if idFree() {
		t.Fatal("the input's sockets closed while a worker may still use them")
	}
	h.sweep(now.Add(heldCloseAfter/2), unused, func() bool { return true })
	if !idFree() {
		t.Fatal("the input's sockets still open once every worker dropped them")
	}

	// Unused once more, and never settled: closed after heldCloseAfter.
	if err := ns.Do(func() error { fd, err := h.dup(1, req); unix.Close(fd); return err }); err != nil {
		t.Fatal(err)
	}
	h.sweep(now, unused, func() bool { return false })
	h.sweep(now.Add(heldCloseAfter), unused, func() bool { return false })
	if !idFree() {
		t.Error("the input's sockets still open after heldCloseAfter")
	}
}
