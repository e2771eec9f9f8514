package worker

import (
	"net/netip"
	"testing"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// transparentCases extend relayCases (TestRelay runs them against each
// backend) with outputs that keep the original source, sent through raw
// sockets with headers the worker writes.
var transparentCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"transparent outputs keep the sender's source, IPv4 and IPv6", testTransparent},
}

func testTransparent(t *testing.T, tp *topo, w *workerProc) {
	const count, size = 2000, 700
	v4 := tp.rule("keep4", "239.1.1.60:5060@r0", "239.2.2.60:6060@r1")
	v6 := tp.rule("keep6", "[ff3e::60]:5060@r0", "[ff3e::61]:6060@r1")
	for _, r := range []*controlproto.WorkerRule{&v4, &v6} {
		r.Outputs[0].PreserveSource = true
	}
	w.sync([]controlproto.WorkerRule{v4, v6})
	k4 := newSink(t, tp.sink1, "k1", "239.2.2.60:6060")
	k6 := newSink(t, tp.sink1, "k1", "[ff3e::61]:6060")
	before := w.counters()
	source{tp.src, "s0", src4}.send(t, "239.1.1.60:5060", 60, count, size, 20000)
	source{tp.src, "s0", src6}.send(t, "[ff3e::60]:5060", 61, count, size, 20000)
	k4.expect(t, 60, count)
	k6.expect(t, 61, count)
	for _, c := range []struct {
		k   *sink
		src netip.Addr
	}{{k4, src4}, {k6, src6}} {
		from := c.k.sources()
		if len(from) != 1 {
			t.Errorf("datagrams from %v, want all from one source, the sender's", from)
			continue
		}
		for ap, n := range from {
			if ap.Addr() != c.src || n != count {
				t.Errorf("%d datagrams from %v, want %d from the sender, %v", n, ap, count, c.src)
			}
		}
	}
	for _, id := range []string{"keep4", "keep6"} {
		w.waitRule(id, stats.RuleCounters{PacketsIn: count, BytesIn: count * size, Outputs: outs(count, size, 1)})
	}
	if after := w.counters(); after.EgressErrors != before.EgressErrors || after.TTLExpired != before.TTLExpired {
		t.Errorf("egress errors %d→%d, ttl_expired %d→%d; want no change",
			before.EgressErrors, after.EgressErrors, before.TTLExpired, after.TTLExpired)
	}
}
