package worker

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/stats"
)

// gsoCases extend relayCases (TestRelay runs both against each backend)
// with UDP GSO egress: equal-size datagrams of one receive batch leave as
// one UDP_SEGMENT send per output, and receivers must still see every
// datagram once, intact, with its own boundaries.
var gsoCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"UDP GSO: IPv4 multicast, fan-out to two", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOStream(t, tp, w, tp.rule("gso4", "239.1.1.21:5021@r0", "239.2.2.21:6021@r1", "239.2.2.21:6021@r2"),
			source{tp.src, "s0", src4}, "239.1.1.21:5021",
			newSink(t, tp.sink1, "k1", "239.2.2.21:6021"), newSink(t, tp.sink2, "k2", "239.2.2.21:6021"))
	}},
	{"UDP GSO: IPv6 multicast, fan-out to two", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOStream(t, tp, w, tp.rule("gso6", "[ff3e::21]:5021@r0", "[ff3e::22]:6021@r1", "[ff3e::22]:6021@r2"),
			source{tp.src, "s0", src6}, "[ff3e::21]:5021",
			newSink(t, tp.sink1, "k1", "[ff3e::22]:6021"), newSink(t, tp.sink2, "k2", "[ff3e::22]:6021"))
	}},
	{"UDP GSO: IPv4 unicast", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOStream(t, tp, w, tp.rule("gsou4", "239.1.1.23:5023@r0", "10.0.2.2:6023@r1"),
			source{tp.src, "s0", src4}, "239.1.1.23:5023",
			newSink(t, tp.sink1, "k1", "10.0.2.2:6023"))
	}},
	{"UDP GSO: IPv6 unicast, fan-out to two", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOStream(t, tp, w, tp.rule("gsou6", "[ff3e::24]:5024@r0", "[fd02::2]:6024@r1", "[fd03::2]:6024@r2"),
			source{tp.src, "s0", src6}, "[ff3e::24]:5024",
			newSink(t, tp.sink1, "k1", "[fd02::2]:6024"), newSink(t, tp.sink2, "k2", "[fd03::2]:6024"))
	}},
	{"UDP GSO: mixed sizes keep their boundaries", testGSOMixedSizes},
	{"UDP GSO: an output MTU below segment and headers sends plainly", testGSOSmallMTU},
	{"UDP GSO: an output MTU that shrinks and grows again", testGSOMTUChange},
	{"UDP GSO: refused by the kernel, falls back once, logged and counted", testGSORefused},
}

// gsoQueued is how many datagrams a test queues while the worker is
// stopped: well within the input socket's 8 MiB receive buffer.
const gsoQueued = 1500

// sendQueued sends st while the worker is stopped (SIGSTOP), so that on
// SIGCONT it meets the whole stream at once and takes it in full receive
// batches: the condition for UDP_SEGMENT runs.
func (w *workerProc) sendQueued(t *testing.T, from source, dst string, st stream) {
	t.Helper()
	s, _ := w.snapshot("")
	mustNoErr(t, unix.Kill(s.PID, unix.SIGSTOP))
	defer func() { mustNoErr(t, unix.Kill(s.PID, unix.SIGCONT)) }()
	from.sendStream(t, dst, st)
}

// gsoDelta is the change of the worker's GSO and error counters.
type gsoDelta struct {
	Sends, Datagrams, Fallbacks, EgressErrors, KernelDrops uint64
}

func (w *workerProc) gsoSince(before stats.WorkerCounters) gsoDelta {
	c := w.counters()
	return gsoDelta{
		Sends:        c.GSOSends - before.GSOSends,
		Datagrams:    c.GSODatagrams - before.GSODatagrams,
		Fallbacks:    c.GSOFallbacks - before.GSOFallbacks,
		EgressErrors: c.EgressErrors - before.EgressErrors,
		KernelDrops:  c.KernelDrops - before.KernelDrops,
	}
}

// waitSent waits until rule id counts n more datagrams sent by each of
// its outputs than in before, so that the worker counters are final.
func (w *workerProc) waitSent(id string, before stats.RuleCounters, n int) {
	w.t.Helper()
	w.waitStats(fmt.Sprintf("%d more datagrams out of every output of %s", n, id), id,
		func(_ stats.Snapshot, rc stats.RuleCounters) bool {
			for i, o := range rc.Outputs {
				var was uint64
				if i < len(before.Outputs) {
					was = before.Outputs[i].PacketsOut
				}
				if o.PacketsOut-was < uint64(n) {
					return false
				}
			}
			return len(rc.Outputs) > 0
		})
}

// testGSOStream relays 1,024-byte datagrams through rule: first a burst
// queued while the worker is stopped, which must leave mostly in
// UDP_SEGMENT sends, then 20,000 at 50,000 per second. Every sink gets
// every datagram once and intact, and every output counts each datagram.
func testGSOStream(t *testing.T, tp *topo, w *workerProc, rule controlproto.WorkerRule, from source, in string, sinks ...*sink) {
	const size, streamed = 1024, 20000
	w.sync([]controlproto.WorkerRule{rule})
	before := w.counters()
	w.sendQueued(t, from, in, stream{id: 1, count: gsoQueued, size: fixedSize(size)})
	for _, k := range sinks {
		k.expect(t, 1, gsoQueued)
	}
	w.waitSent(rule.ID, stats.RuleCounters{}, gsoQueued)
	d := w.gsoSince(before)
	t.Logf("queued burst: %+v", d)
	outputs := uint64(len(rule.Outputs))
	if d.Sends == 0 || d.Datagrams < outputs*gsoQueued/2 {
		t.Errorf("%d UDP_SEGMENT sends carried %d of %d datagrams, want at least half", d.Sends, d.Datagrams, outputs*gsoQueued)
	}

	before = w.counters()
	from.sendStream(t, in, stream{id: 2, count: streamed, size: fixedSize(size), pps: 50000})
	for _, k := range sinks {
		k.expect(t, 2, streamed)
	}
	total := gsoQueued + streamed
	w.waitRule(rule.ID, stats.RuleCounters{PacketsIn: uint64(total), BytesIn: uint64(total * size),
		Outputs: outs(total, size, len(rule.Outputs))})
	d = w.gsoSince(before)
	t.Logf("%d at 50k pps: %+v", streamed, d)
	if d.EgressErrors != 0 || d.KernelDrops != 0 {
		t.Errorf("egress errors %d, kernel drops %d; want none", d.EgressErrors, d.KernelDrops)
	}
}

// mixedSizes returns n payload sizes from 12 (the payload header) to 1,472
// in runs: each size repeats 1 to 6 times, and a third of the runs end in
// one shorter datagram, which may join the run's UDP_SEGMENT send.
func mixedSizes(n int) []int {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, 0, n+7)
	for len(sizes) < n {
		size := payloadHeader + rng.IntN(1472-payloadHeader+1)
		for range 1 + rng.IntN(6) {
			sizes = append(sizes, size)
		}
		if rng.IntN(3) == 0 {
			sizes = append(sizes, payloadHeader+rng.IntN(size-payloadHeader+1))
		}
	}
	return sizes[:n]
}

func testGSOMixedSizes(t *testing.T, tp *topo, w *workerProc) {
	rule := tp.rule("mixed", "239.1.1.25:5025@r0", "239.2.2.25:6025@r1", "239.2.2.25:6025@r2")
	w.sync([]controlproto.WorkerRule{rule})
	k1 := newSink(t, tp.sink1, "k1", "239.2.2.25:6025")
	k2 := newSink(t, tp.sink2, "k2", "239.2.2.25:6025")
	from := source{tp.src, "s0", src4}
	sizes := mixedSizes(gsoQueued + 5000)
	before := w.counters()
	w.sendQueued(t, from, "239.1.1.25:5025", stream{id: 25, count: gsoQueued, size: func(i int) int { return sizes[i] }})
	from.sendStream(t, "239.1.1.25:5025", stream{id: 26, count: 5000, size: func(i int) int { return sizes[gsoQueued+i] },
		pps: 50000, burst: 16})
	bytes := 0
	for _, n := range sizes {
		bytes += n
	}
	for _, k := range []*sink{k1, k2} {
		k.expect(t, 25, gsoQueued)
		k.expect(t, 26, 5000)
	}
	w.waitRule("mixed", stats.RuleCounters{PacketsIn: uint64(len(sizes)), BytesIn: uint64(bytes),
		Outputs: []stats.OutputCounters{{PacketsOut: uint64(len(sizes)), BytesOut: uint64(bytes)},
			{PacketsOut: uint64(len(sizes)), BytesOut: uint64(bytes)}}})
	d := w.gsoSince(before)
	t.Logf("%+v", d)
	if d.Sends == 0 {
		t.Errorf("no UDP_SEGMENT send for runs of equal sizes")
	}
}

// setMTU sets the MTU of the relay's r2 until the test ends. It stays at
// least 1,280, so that r2 keeps its IPv6 addresses.
func setMTU(t *testing.T, tp *topo, mtu int) {
	tp.relay.MustRun("ip", "link", "set", "dev", "r2", "mtu", strconv.Itoa(mtu))
	t.Cleanup(func() { tp.relay.MustRun("ip", "link", "set", "dev", "r2", "mtu", "1500") })
}

func testGSOSmallMTU(t *testing.T, tp *topo, w *workerProc) {
	setMTU(t, tp, 1300)
	w.sync([]controlproto.WorkerRule{tp.rule("mtu", "239.1.1.26:5026@r0", "239.2.2.26:6026@r2")})
	k := newSink(t, tp.sink2, "k2", "239.2.2.26:6026")
	from := source{tp.src, "s0", src4}
	// 1,400 + 28 bytes of headers do not fit 1,300: each datagram leaves
	// alone, and the kernel fragments it.
	before := w.counters()
	w.sendQueued(t, from, "239.1.1.26:5026", stream{id: 1, count: gsoQueued, size: fixedSize(1400)})
	k.expect(t, 1, gsoQueued)
	w.waitSent("mtu", stats.RuleCounters{}, gsoQueued)
	if d := w.gsoSince(before); d != (gsoDelta{}) {
		t.Errorf("1,400-byte datagrams through a 1,300-byte MTU: %+v, want no GSO and no errors", d)
	}
	// 1,200 + 28 fit.
	_, rc := w.snapshot("mtu")
	before = w.counters()
	w.sendQueued(t, from, "239.1.1.26:5026", stream{id: 2, count: gsoQueued, size: fixedSize(1200)})
	k.expect(t, 2, gsoQueued)
	w.waitSent("mtu", rc, gsoQueued)
	if d := w.gsoSince(before); d.Sends == 0 || d.EgressErrors != 0 {
		t.Errorf("1,200-byte datagrams through a 1,300-byte MTU: %+v, want UDP_SEGMENT sends", d)
	}
}

func testGSOMTUChange(t *testing.T, tp *topo, w *workerProc) {
	w.sync([]controlproto.WorkerRule{tp.rule("mtuchange", "239.1.1.27:5027@r0", "239.2.2.27:6027@r2")})
	k := newSink(t, tp.sink2, "k2", "239.2.2.27:6027")
	from := source{tp.src, "s0", src4}
	queued := stream{count: 1000, size: fixedSize(1400)}
	phase := func(id uint32) gsoDelta {
		t.Helper()
		_, rc := w.snapshot("mtuchange")
		before := w.counters()
		queued.id = id
		w.sendQueued(t, from, "239.1.1.27:5027", queued)
		if id == 2 {
			// The io_uring backend sends the datagrams of a refused
			// UDP_SEGMENT send again after those that followed them
			// in the same dispatch: this phase may leave reordered.
			k.expectUnordered(t, id, queued.count)
		} else {
			k.expect(t, id, queued.count)
		}
		w.waitSent("mtuchange", rc, queued.count)
		return w.gsoSince(before)
	}
	if d := phase(1); d.Sends == 0 {
		t.Fatalf("MTU 1,500: %+v, want UDP_SEGMENT sends", d)
	}
	// The socket's limits still say 1,500: the kernel refuses the runs
	// (EMSGSIZE) and the worker sends them again one by one. (Should the
	// worker's periodic MTU read come first, it narrows the limits and
	// says so itself: one log either way.)
	shrank := countLogs(w, `"msg":"output MTU shrank`)
	setMTU(t, tp, 1300)
	if d := phase(2); d != (gsoDelta{}) {
		t.Errorf("MTU 1,300: %+v, want every datagram sent, without GSO, fallback or error", d)
	}
	if n := countLogs(w, `"msg":"output MTU shrank`) - shrank; n != 1 {
		t.Errorf("%d logs of the shrunk MTU, want 1", n)
	}
	// The worker reads the MTU again with its socket retries (every 5 s).
	tp.relay.MustRun("ip", "link", "set", "dev", "r2", "mtu", "1500")
	id := uint32(3)
	netnstest.WaitFor(t, 3*DefaultSocketRetry, "UDP_SEGMENT sends again at MTU 1,500", func() bool {
		d := phase(id)
		id++
		return d.Sends > 0
	})
}

func testGSORefused(t *testing.T, tp *topo, w *workerProc) {
	w.sync([]controlproto.WorkerRule{tp.rule("refused", "239.1.1.28:5028@r0", "239.2.2.28:6028@r1")})
	k := newSink(t, tp.sink1, "k1", "239.2.2.28:6028")
	s, _ := w.snapshot("")
	setNoCheck(t, s.PID, tp.ifindex["r1"])
	from := source{tp.src, "s0", src4}
	logged := countLogs(w, `"msg":"UDP GSO refused`)
	before := w.counters()
	for id := uint32(1); id <= 2; id++ {
		_, rc := w.snapshot("refused")
		w.sendQueued(t, from, "239.1.1.28:5028", stream{id: id, count: gsoQueued, size: fixedSize(1024)})
		k.expect(t, id, gsoQueued)
		w.waitSent("refused", rc, gsoQueued)
	}
	if d, want := w.gsoSince(before), (gsoDelta{Fallbacks: 1}); d != want {
		t.Errorf("two bursts on a socket that refuses GSO: %+v, want %+v", d, want)
	}
	if n := countLogs(w, `"msg":"UDP GSO refused`) - logged; n != 1 {
		t.Errorf("%d logs of the refusal, want 1", n)
	}
}

// setNoCheck switches UDP checksums off (SO_NO_CHECK) on the IPv4 egress
// socket of process pid on ifindex, reached with pidfd_getfd(2): the
// kernel then refuses UDP_SEGMENT with EINVAL, as it refuses it with EIO
// where the device lacks checksum offload on kernels before 6.11. IPv4
// receivers accept the datagrams without checksum.
func setNoCheck(t *testing.T, pid, ifindex int) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	mustNoErr(t, err)
	defer unix.Close(pidfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	mustNoErr(t, err)
	found := 0
	for _, e := range ents {
		if link, _ := os.Readlink(dir + "/" + e.Name()); !strings.HasPrefix(link, "socket:") {
			continue
		}
		n, _ := strconv.Atoi(e.Name())
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			continue // closed meanwhile
		}
		domain, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		dev, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
		if domain == unix.AF_INET && typ == unix.SOCK_DGRAM && dev == ifindex {
			mustNoErr(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1))
			found++
		}
		unix.Close(fd)
	}
	if found != 1 {
		t.Fatalf("%d IPv4 egress sockets of process %d on ifindex %d, want 1", found, pid, ifindex)
	}
}
