package topology

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExclusiveInputs runs mcrd with --exclusive-inputs: the relayed group
// reaches the sink, a local application on the relay joined to it on the
// input gets none of it, a group no rule relays still reaches such an
// application, and once mcrd dies by SIGKILL (no cleanup of its own) the
// kernel delivers the relayed group locally again.
func TestExclusiveInputs(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Flags: []string{"--exclusive-inputs"}})
	d.add(rule("excl", inIf, "239.1.1.1", 5000, out("239.2.2.1", 6000, outIf)))
	d.waitReady()
	waitFor(t, 5*time.Second, "mcrd to attach the program on "+inIf, func() bool {
		return strings.Contains(d.proc.Output(), "exclusive input on")
	})

	relayed, other := newStream(srcIf, "239.1.1.1", 5000), newStream(srcIf, "239.1.1.9", 5000)
	sink := startRecv(t, l.sink, sinkIf, "239.2.2.1", 6000, relayed.Count)
	// The local receiver on the relayed group is expected to get nothing,
	// so it ends by its deadline. The kernel hands each datagram to the
	// relay's AF_PACKET tap and, unless dropped, to the local socket in
	// the same softirq pass, before the worker relays it: once the sink
	// has every datagram, a local delivery would have happened.
	local := startRecvUntil(t, l.relay, inIf, "239.1.1.1", 5000, relayed.Count, 3*time.Second)
	localOther := startRecv(t, l.relay, inIf, "239.1.1.9", 5000, other.Count)
	send(t, l.src, relayed)
	send(t, l.src, other)
	checkDelivered(t, "sink", sink.result(), relayed.Count, relayed.Size)
	d.checkCounted("excl", relayed.Count, relayed.Size, dest("239.2.2.1", 6000, outIf))
	if got := local.result(); got.Received != 0 {
		t.Errorf("local receiver of the relayed group on %s got %d datagrams, want 0", inIf, got.Received)
	}
	checkDelivered(t, "local receiver of a group no rule relays", localOther.result(), other.Count, other.Size)

	if err := d.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d.proc.Wait(5 * time.Second); err == nil {
		t.Fatal("mcrd exited cleanly after SIGKILL")
	}
	local = startRecv(t, l.relay, inIf, "239.1.1.1", 5000, relayed.Count)
	send(t, l.src, relayed)
	checkDelivered(t, "local receiver after mcrd was killed", local.result(), relayed.Count, relayed.Size)
}
