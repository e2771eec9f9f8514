package topology

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// TestIncompleteFragments sends the first fragment of a datagram to a
// relayed group, and never the rest. The input sockets have the kernel
// reassemble IPv4 (PACKET_FANOUT_FLAG_DEFRAG), so no worker ever sees it:
// not in rx_packets, not in fragments. It becomes visible when the
// namespace's reassembly timeout (net.ipv4.ipfrag_time, 1 s here) drops
// it, in GetStats' namespace counters and mcrctl stats: twice, because two
// reassembly queues held it, the relay's and the kernel's own for local
// delivery (mcr joined the group). Whole fragmented datagrams are relayed.
func TestIncompleteFragments(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	l.relay.MustRun("sysctl", "-qw", "net.ipv4.ipfrag_time=1")
	d := startDaemon(t, l.relay, daemonOptions{})
	id := d.add(rule("frag", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	before := d.stats()
	if before.Namespace == nil {
		t.Fatal("GetStats has no namespace counters")
	}
	whole := packettest.BuildUDP4(netip.MustParseAddrPort("10.1.0.1:4000"), netip.MustParseAddrPort("239.1.1.1:5000"),
		make([]byte, 3000))
	if err := l.src.Do(func() error { return packettest.Inject(srcIf, packettest.Fragment(whole, 1400)[0]) }); err != nil {
		t.Fatal(err)
	}

	var after stats.Report
	waitFor(t, 10*time.Second, "the fragment's reassembly to time out in both queues", func() bool {
		after = d.stats()
		return after.Namespace.IPReasmTimeout >= before.Namespace.IPReasmTimeout+2
	})
	got := stats.NamespaceCounters{
		IPReasmReqds:   after.Namespace.IPReasmReqds - before.Namespace.IPReasmReqds,
		IPReasmOKs:     after.Namespace.IPReasmOKs - before.Namespace.IPReasmOKs,
		IPReasmFails:   after.Namespace.IPReasmFails - before.Namespace.IPReasmFails,
		IPReasmTimeout: after.Namespace.IPReasmTimeout - before.Namespace.IPReasmTimeout,
	}
	want := stats.NamespaceCounters{IPReasmReqds: 2, IPReasmFails: 2, IPReasmTimeout: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("namespace counter deltas for one lone fragment (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(workerSums(before), workerSums(after)); diff != "" {
		t.Errorf("a worker saw the lone fragment (-before +after):\n%s", diff)
	}
	out, err := d.ctl("stats")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("namespace: %d IPv4 reassembly failures (%d timed out)",
		after.Namespace.IPReasmFails, after.Namespace.IPReasmTimeout); !strings.Contains(out, want) {
		t.Errorf("mcrctl stats does not say %q:\n%s", want, out)
	}

	// Datagrams whose fragments all arrive are reassembled and relayed.
	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Count, s.Size = 20, 3000
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, l.src, s)
	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted(id, s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
}

// workerSums sums the counters of every worker in r.
func workerSums(r stats.Report) stats.WorkerCounters {
	var c stats.WorkerCounters
	for _, w := range r.Workers {
		c.RxPackets += w.RxPackets
		c.Fragments += w.Fragments
		c.Malformed += w.Malformed
		c.NoMatch += w.NoMatch
	}
	return c
}
