package worker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// TestRelay runs the data-plane suite against each backend: one worker
// process in the relay namespace, driven over its socketpair, with rules
// replaced per case.
func TestRelay(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range ingressModes {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t)
			w := startWorker(t, tp.relay, mode, 0, -1)
			backend, ring, _ := strings.Cut(mode, "+")
			w.waitStats("the first snapshot", "", func(s stats.Snapshot, _ stats.RuleCounters) bool {
				return s.Backend == backend
			})
			t.Cleanup(func() { checkRingLogs(t, w, ring) })
			for _, tc := range slices.Concat(relayCases, gsoCases, gsoInputCases, refusedCases, inputCases, transparentCases) {
				t.Run(tc.name, func(t *testing.T) {
					w.t = t
					tc.run(t, tp, w)
				})
			}
			t.Run("shutdown", func(t *testing.T) {
				w.t = t
				w.shutdown(t)
			})
		})
	}
}

// checkRingLogs checks that every input the worker opened had a receive
// ring, or none, as its mode asked.
func checkRingLogs(t *testing.T, w *workerProc, ring string) {
	want := `"ring_frames":0,"ring_blocks":0`
	switch ring {
	case "":
		want = fmt.Sprintf(`"ring_frames":%d,"ring_blocks":0`, DefaultRingFrames)
	case RingBlocks:
		want = fmt.Sprintf(`"ring_frames":0,"ring_blocks":%d`, DefaultRingBlocks)
	}
	opened := 0
	for _, l := range w.logLines() {
		if !strings.Contains(l, `"input open"`) {
			continue
		}
		opened++
		if !strings.Contains(l, want) {
			t.Errorf("input opened with the wrong ring (want %s): %s", want, l)
		}
	}
	if opened == 0 {
		t.Error("no input was opened")
	}
}

func (w *workerProc) seenSnapshots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

var (
	src4  = netip.MustParseAddr("10.0.1.1")
	src4b = netip.MustParseAddr("10.0.1.3")
	src6  = netip.MustParseAddr("fd01::1")
)

// counters returns the worker counters now, for deltas.
func (w *workerProc) counters() stats.WorkerCounters {
	s, _ := w.snapshot("")
	return s.Counters
}

// waitRule waits until rule id reports want.
func (w *workerProc) waitRule(id string, want stats.RuleCounters) {
	w.t.Helper()
	want.ID = id
	netnstest.PollErr(w.t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, got := w.snapshot(id); !cmp.Equal(want, got) {
			return fmt.Errorf("counters of rule %s (-want +got):\n%s", id, cmp.Diff(want, got))
		}
		return nil
	})
}

func outs(n, size int, k int) []stats.OutputCounters {
	o := make([]stats.OutputCounters, k)
	for i := range o {
		o[i] = stats.OutputCounters{PacketsOut: uint64(n), BytesOut: uint64(n * size)}
	}
	return o
}

var relayCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"translate and fan out to two interfaces, 20000 packets at 20k pps", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("fanout", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1", "239.2.2.2:6000@r2")})
		k1 := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
		k2 := newSink(t, tp.sink2, "k2", "239.2.2.2:6000")
		before := w.counters()
		source{tp.src, "s0", src4}.send(t, "239.1.1.1:5001", 1, 20000, 1024, 20000)
		k1.expect(t, 1, 20000)
		k2.expect(t, 1, 20000)
		w.waitRule("fanout", stats.RuleCounters{PacketsIn: 20000, BytesIn: 20000 * 1024, Outputs: outs(20000, 1024, 2)})
		after := w.counters()
		if rx := after.RxPackets - before.RxPackets; rx != 20000 {
			t.Errorf("rx_packets grew by %d, want 20000 (the prefilter lets only the stream through)", rx)
		}
		if after.EgressErrors != before.EgressErrors || after.KernelDrops != before.KernelDrops {
			t.Errorf("egress errors %d→%d, kernel drops %d→%d; want no change",
				before.EgressErrors, after.EgressErrors, before.KernelDrops, after.KernelDrops)
		}
	}},
	{"IPv6 to IPv6", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("v6", "[ff3e::1]:5001@r0", "[ff3e::2]:6000@r1")})
		k := newSink(t, tp.sink1, "k1", "[ff3e::2]:6000")
		source{tp.src, "s0", src6}.send(t, "[ff3e::1]:5001", 2, 500, 1200, 10000)
		k.expect(t, 2, 500)
		w.waitRule("v6", stats.RuleCounters{PacketsIn: 500, BytesIn: 500 * 1200, Outputs: outs(500, 1200, 1)})
	}},
	{"IPv4 to IPv6", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("4to6", "239.1.1.3:5003@r0", "[ff3e::3]:6003@r1")})
		k := newSink(t, tp.sink1, "k1", "[ff3e::3]:6003")
		source{tp.src, "s0", src4}.send(t, "239.1.1.3:5003", 3, 500, 100, 10000)
		k.expect(t, 3, 500)
		w.waitRule("4to6", stats.RuleCounters{PacketsIn: 500, BytesIn: 500 * 100, Outputs: outs(500, 100, 1)})
	}},
	{"multicast to unicast", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("m2u", "239.1.1.4:5004@r0", "10.0.2.2:6004@r1")})
		k := newSink(t, tp.sink1, "k1", "10.0.2.2:6004")
		source{tp.src, "s0", src4}.send(t, "239.1.1.4:5004", 4, 100, 300, 2000)
		k.expect(t, 4, 100)
	}},
	{"unicast to multicast", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("u2m", "10.0.1.2:5005@r0", "239.2.2.5:6005@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.5:6005")
		source{tp.src, "s0", src4}.send(t, "10.0.1.2:5005", 5, 100, 300, 2000)
		k.expect(t, 5, 100)
	}},
	{"source-specific rule ignores other senders", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("ssm", "239.1.1.6:5006@r0 from 10.0.1.1", "239.2.2.6:6006@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.6:6006")
		before := w.counters()
		source{tp.src, "s0", src4b}.send(t, "239.1.1.6:5006", 63, 100, 200, 5000)
		source{tp.src, "s0", src4}.send(t, "239.1.1.6:5006", 61, 100, 200, 5000)
		k.expect(t, 61, 100)
		w.waitRule("ssm", stats.RuleCounters{PacketsIn: 100, BytesIn: 100 * 200, Outputs: outs(100, 200, 1)})
		if got := k.result(63); got.Received != 0 {
			t.Errorf("the other sender's stream was relayed: %+v", got)
		}
		if d := w.counters().NoMatch - before.NoMatch; d != 100 {
			t.Errorf("no_match grew by %d, want 100 (the other sender)", d)
		}
	}},
	{"9000-byte MTU jumbo frames and reassembled datagrams", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("jumbo", "239.1.1.7:5007@r0", "239.2.2.7:6007@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.7:6007")
		source{tp.src, "s0", src4}.send(t, "239.1.1.7:5007", 7, 200, 9000-28, 5000)
		k.expect(t, 7, 200)
		// Larger than the MTU: fragmented by the sender, reassembled by
		// FANOUT_FLAG_DEFRAG, relayed whole, fragmented again on egress.
		source{tp.src, "s0", src4}.send(t, "239.1.1.7:5007", 70, 5, 20000, 1000)
		k.expect(t, 70, 5)
		w.waitRule("jumbo", stats.RuleCounters{PacketsIn: 205, BytesIn: 200*8972 + 5*20000,
			Outputs: []stats.OutputCounters{{PacketsOut: 205, BytesOut: 200*8972 + 5*20000}}})
	}},
	{"a backlog larger than the buffer pool drains completely", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("backlog", "239.1.1.12:5012@r0", "239.2.2.12:6012@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.12:6012")
		s, _ := w.snapshot("")
		// The packets queue in the socket while the worker is stopped;
		// on SIGCONT it meets more than a pool of buffers at once.
		mustNoErr(t, unix.Kill(s.PID, unix.SIGSTOP))
		source{tp.src, "s0", src4}.send(t, "239.1.1.12:5012", 12, 3000, 200, 0)
		mustNoErr(t, unix.Kill(s.PID, unix.SIGCONT))
		k.expect(t, 12, 3000)
		w.waitRule("backlog", stats.RuleCounters{PacketsIn: 3000, BytesIn: 3000 * 200, Outputs: outs(3000, 200, 1)})
	}},
	{"kernel drops are read and accumulated", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("drops", "239.1.1.13:5013@r0", "239.2.2.13:6013@r1")})
		before := w.counters()
		s, _ := w.snapshot("")
		// More than the socket's receive buffer holds arrives while the
		// worker is stopped: the kernel drops the rest and counts it.
		const n = 40000
		mustNoErr(t, unix.Kill(s.PID, unix.SIGSTOP))
		source{tp.src, "s0", src4}.send(t, "239.1.1.13:5013", 13, n, 200, 0)
		mustNoErr(t, unix.Kill(s.PID, unix.SIGCONT))
		w.waitStats("received plus dropped to add up", "drops", func(s stats.Snapshot, rc stats.RuleCounters) bool {
			rx, drops := s.Counters.RxPackets-before.RxPackets, s.Counters.KernelDrops-before.KernelDrops
			return rx+drops == n && rc.PacketsIn == rx && drops > 0
		})
	}},
	{"input interface down and up", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("updown", "239.1.1.14:5014@r0", "239.2.2.14:6014@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.14:6014")
		failedBefore := countLogs(w, `"msg":"receive failed"`)
		tp.relay.MustRun("ip", "link", "set", "r0", "down")
		tp.relay.MustRun("ip", "link", "set", "r0", "up")
		netnstest.WaitFor(t, 5*time.Second, "r0 to come up", func() bool {
			out, err := tp.relay.Run("cat", "/sys/class/net/r0/operstate")
			return err == nil && strings.TrimSpace(out) == "up"
		})
		source{tp.src, "s0", src4}.send(t, "239.1.1.14:5014", 14, 100, 200, 5000)
		k.expect(t, 14, 100)
		if n := countLogs(w, `"msg":"receive failed"`) - failedBefore; n > 1 {
			t.Errorf("%d receive errors logged for one link flap, want at most one", n)
		}
	}},
	{"malformed packets are counted, never forwarded", testMalformed},
	{"tun input", testTun},
	{"outputs that cannot be served are errors on the rule", func(t *testing.T, tp *topo, w *workerProc) {
		w.sync([]controlproto.WorkerRule{tp.rule("errs", "239.1.1.10:5010@r0",
			"239.2.2.10:6010@r1 from 10.99.99.99", "239.2.2.10:6010@gone", "239.2.2.10:6010@r1")})
		k := newSink(t, tp.sink1, "k1", "239.2.2.10:6010")
		source{tp.src, "s0", src4}.send(t, "239.1.1.10:5010", 10, 50, 100, 5000)
		k.expect(t, 10, 50)
		w.waitRule("errs", stats.RuleCounters{PacketsIn: 50, BytesIn: 5000,
			Outputs: []stats.OutputCounters{{Errors: 50}, {Errors: 50}, {PacketsOut: 50, BytesOut: 5000}},
			Error: "outputs[0] 239.2.2.10:6010@r1: bind to source 10.99.99.99: cannot assign requested address; " +
				"outputs[1] 239.2.2.10:6010@gone: interface gone does not exist",
			OutputErrors: []string{"bind to source 10.99.99.99: cannot assign requested address", "interface gone does not exist", ""}})
	}},
	{"SyncRules with 100,000 rules", func(t *testing.T, tp *topo, w *workerProc) {
		rules := make([]controlproto.WorkerRule, 100000)
		for i := range rules {
			group := netip.AddrFrom4([4]byte{239, byte(10 + i>>16), byte(i >> 8), byte(i)})
			rules[i] = tp.rule(fmt.Sprintf("bulk%06d", i), group.String()+":5100@r0", "239.2.2.11:6011@r1")
		}
		start := time.Now()
		w.sync(rules)
		t.Logf("100,000 rules applied and reported in %v", time.Since(start).Round(time.Millisecond))
		k := newSink(t, tp.sink1, "k1", "239.2.2.11:6011")
		source{tp.src, "s0", src4}.send(t, "239.10.212.49:5100", 11, 20, 100, 1000) // rule 54321
		k.expect(t, 11, 20)
		w.waitRule("bulk054321", stats.RuleCounters{PacketsIn: 20, BytesIn: 2000, Outputs: outs(20, 100, 1)})
	}},
}

func countLogs(w *workerProc, s string) int {
	n := 0
	for _, l := range w.logLines() {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func testMalformed(t *testing.T, tp *topo, w *workerProc) {
	w.sync([]controlproto.WorkerRule{
		tp.rule("bad4", "239.1.1.8:5008@r0", "239.2.2.8:6008@r1"),
		tp.rule("bad6", "[ff3e::8]:5008@r0", "[ff3e::8]:6008@r1"),
	})
	k := newSink(t, tp.sink1, "k1", "239.2.2.8:6008")
	k6 := newSink(t, tp.sink1, "k1", "[ff3e::8]:6008")
	src, dst := netip.MustParseAddrPort("10.0.1.1:4000"), netip.MustParseAddrPort("239.1.1.8:5008")
	good := func(seq int) []byte { return packettest.BuildUDP4(src, dst, payload(80, uint32(seq), 200)) }
	edit4 := func(seq int, f func(p []byte)) []byte {
		p := good(seq)
		f(p)
		packettest.SetIPv4Checksum(p)
		return p
	}
	v6 := packettest.BuildUDP6(netip.MustParseAddrPort("[fd01::1]:4000"), netip.MustParseAddrPort("[ff3e::8]:5008"),
		payload(81, 0, 3000))
	lying6 := packettest.BuildUDP6(netip.MustParseAddrPort("[fd01::1]:4000"), netip.MustParseAddrPort("[ff3e::8]:5008"),
		payload(81, 1, 100))
	binary.BigEndian.PutUint16(lying6[4:], 400)

	// Passed by the prefilter and counted by the parser:
	malformed := [][]byte{
		edit4(1000, func(p []byte) { binary.BigEndian.PutUint16(p[2:], uint16(len(p)+100)) }), // IP length past the end
		edit4(1001, func(p []byte) { binary.BigEndian.PutUint16(p[24:], 400) }),               // UDP length past the end
		func() []byte { p := good(1002); p[10] ^= 0xff; return p }(),                          // header checksum
		lying6, // IPv6 payload length past the end
	}
	fragments := packettest.Fragment(v6, 1400) // IPv6: DEFRAG does not reassemble it
	// Dropped by the prefilter already:
	filtered := [][]byte{
		edit4(1003, func(p []byte) { p[0] = 0x44 }), // IHL below 5
		edit4(1004, func(p []byte) { p[0] = 0x4f }), // IHL past the end
		edit4(1005, func(p []byte) { p[9] = 6 }),    // TCP
	}
	before := w.counters()
	var pkts [][]byte
	bad := append(append(append([][]byte(nil), malformed...), fragments...), filtered...)
	for i := range 20 {
		pkts = append(pkts, good(i))
		if i < len(bad) {
			pkts = append(pkts, bad[i])
		}
	}
	inject(t, tp.src, "s0", pkts...)
	k.expect(t, 80, 20)
	w.waitRule("bad4", stats.RuleCounters{PacketsIn: 20, BytesIn: 20 * 200, Outputs: outs(20, 200, 1)})
	after := w.counters()
	got := stats.WorkerCounters{
		RxPackets: after.RxPackets - before.RxPackets,
		Malformed: after.Malformed - before.Malformed,
		Fragments: after.Fragments - before.Fragments,
		NotUDP:    after.NotUDP - before.NotUDP,
		NoMatch:   after.NoMatch - before.NoMatch,
	}
	want := stats.WorkerCounters{
		RxPackets: uint64(20 + len(malformed) + len(fragments)),
		Malformed: uint64(len(malformed)),
		Fragments: uint64(len(fragments)),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counter deltas (-want +got):\n%s", diff)
	}
	if r := k6.result(81); r.Received != 0 {
		t.Errorf("IPv6 fragments or malformed packets were relayed: %+v", r)
	}
}

func testTun(t *testing.T, tp *topo, w *workerProc) {
	var tun *os.File
	err := tp.relay.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq("tun0")
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		tun = os.NewFile(uintptr(fd), "tun0")
		return nil
	})
	mustNoErr(t, err)
	t.Cleanup(func() { tun.Close() })
	tp.relay.SetupLink("tun0", "10.9.9.1/24")
	tp.ifindex["tun0"] = tp.relay.IfIndex("tun0")

	w.sync([]controlproto.WorkerRule{tp.rule("tun", "239.1.1.9:5009@tun0", "239.2.2.9:6009@r1")})
	k := newSink(t, tp.sink1, "k1", "239.2.2.9:6009")
	src, dst := netip.MustParseAddrPort("10.9.9.9:4000"), netip.MustParseAddrPort("239.1.1.9:5009")
	for i := range 100 {
		if _, err := tun.Write(packettest.BuildUDP4(src, dst, payload(9, uint32(i), 500))); err != nil {
			t.Fatalf("write to tun: %v", err)
		}
	}
	k.expect(t, 9, 100)
	w.waitRule("tun", stats.RuleCounters{PacketsIn: 100, BytesIn: 100 * 500, Outputs: outs(100, 500, 1)})
}

// TestTwoWorkersNoDuplicates runs two workers, one per core (and backend,
// when there are two), in one fanout group: every packet is relayed exactly
// once.
func TestTwoWorkersNoDuplicates(t *testing.T) {
	netnstest.RequireRoot(t)
	tp := newTopo(t)
	cores := []int{0, 1}
	if runtime.NumCPU() < 2 {
		cores = []int{-1, -1}
	}
	rules := []controlproto.WorkerRule{tp.rule("pair", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")}
	var ws []*workerProc
	for i := range 2 {
		w := startWorker(t, tp.relay, backends[i%len(backends)], i, cores[i])
		w.sync(rules)
		ws = append(ws, w)
	}
	k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
	const n = 10000
	source{tp.src, "s0", src4}.send(t, "239.1.1.1:5001", 1, n, 500, 20000)
	k.expect(t, 1, n)
	netnstest.WaitFor(t, 5*time.Second, "the workers' counters to add up", func() bool {
		var in uint64
		for _, w := range ws {
			_, rc := w.snapshot("pair")
			in += rc.PacketsIn
		}
		return in == n
	})
	for i, w := range ws {
		_, rc := w.snapshot("pair")
		t.Logf("worker %d (%s) relayed %d", i, backends[i%len(backends)], rc.PacketsIn)
	}
}

// TestRingFullCounted stops a worker whose input ring has two blocks, or
// 64 frames, while 2,000 datagrams arrive: the kernel keeps what the ring
// holds and drops the rest, and every datagram sent is then either relayed
// or counted in kernel_drops, with the full ring logged.
func TestRingFullCounted(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []string{BackendMmsg + "+blocks=2", BackendUring + "+blocks=2", BackendMmsg + "+frames=64", BackendUring + "+frames=64"} {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t)
			w := startWorker(t, tp.relay, mode, 0, -1)
			w.sync([]controlproto.WorkerRule{tp.rule("burst", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")})
			k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
			mustNoErr(t, w.cmd.Process.Signal(unix.SIGSTOP))
			const n = 2000
			source{tp.src, "s0", src4}.send(t, "239.1.1.1:5001", 1, n, 1000, 20000)
			mustNoErr(t, w.cmd.Process.Signal(unix.SIGCONT))
			netnstest.WaitFor(t, 5*time.Second, "relayed + kernel_drops to reach the datagrams sent", func() bool {
				_, rc := w.snapshot("burst")
				return rc.PacketsIn+w.counters().KernelDrops == n
			})
			_, rc := w.snapshot("burst")
			drops := w.counters().KernelDrops
			// A block is handed over full or after the 1 ms timeout, so
			// two blocks hold what arrived in about 2 ms (~40 datagrams);
			// 64 frames hold 64.
			if rc.PacketsIn < 2 || drops < n/2 {
				t.Errorf("relayed %d, kernel_drops %d: want what two blocks held relayed, most dropped", rc.PacketsIn, drops)
			}
			k.expect(t, 1, int(rc.PacketsIn))
			// Logs and stats come on separate pipes: the record may
			// trail the counters.
			netnstest.WaitFor(t, 5*time.Second, "the ring's freeze to be logged", func() bool {
				return countLogs(w, "receive ring full") > 0
			})
			t.Logf("relayed %d, kernel_drops %d", rc.PacketsIn, drops)
		})
	}
}

// TestBusyPollRelays relays a paced stream through a busy-polling worker
// of each backend: every datagram arrives, in order, and the worker's stats
// and commands still flow while it never sleeps.
func TestBusyPollRelays(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			w := startWorker(t, tp.relay, backend+"+busy", 0, -1)
			w.sync([]controlproto.WorkerRule{tp.rule("busy", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")})
			k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
			const n = 2000
			source{tp.src, "s0", src4}.send(t, "239.1.1.1:5001", 1, n, 1000, 10000)
			k.expect(t, 1, n)
			netnstest.WaitFor(t, 5*time.Second, "the worker to count the stream", func() bool {
				_, rc := w.snapshot("busy")
				return rc.PacketsIn == n
			})
		})
	}
}

// TestInputDownDoesNotSpin takes the input link down under a worker in
// each mode: the socket reports ENETDOWN (POLLERR), which must not keep
// the loop busy, and once the link is up again the worker relays again
// without being told.
func TestInputDownDoesNotSpin(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range ingressModes {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t)
			w := startWorker(t, tp.relay, mode, 0, -1)
			w.sync([]controlproto.WorkerRule{tp.rule("down", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")})
			k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
			src := source{tp.src, "s0", src4}
			src.send(t, "239.1.1.1:5001", 1, 100, 200, 10000)
			k.expect(t, 1, 100)

			tp.relay.MustRun("ip", "link", "set", "r0", "down")
			if used, busy := cpuBesideBusyLoop(t, w.cmd.Process.Pid); used > busy/4 {
				t.Errorf("worker used %v of CPU with its input down while a busy loop used %v: it spins", used, busy)
			}
			tp.relay.MustRun("ip", "link", "set", "r0", "up")
			netnstest.WaitFor(t, 10*time.Second, "the input to relay again", func() bool {
				src.send(t, "239.1.1.1:5001", 2, 1, 200, 1000)
				return k.result(2).Received > 0
			})
		})
	}
}

// cpuBesideBusyLoop measures the CPU time process pid uses while a busy
// loop runs next to it, until the loop has had 300 ms of CPU, and returns
// both. A process that spins gets about as much CPU as the loop, however
// loaded the machine is (the scheduler shares a core fairly between
// them); one that sleeps gets a small fraction of it. A fixed bound over a
// fixed wall-clock span would instead pass a spinning process starved by
// other work, and could fail an idle one on a machine too slow to wake it.
func cpuBesideBusyLoop(t *testing.T, pid int) (used, busy time.Duration) {
	t.Helper()
	loop := netnstest.Start(t, nil, "sh", "-c", "while :; do :; done")
	loopPid := loop.Cmd.Process.Pid
	before, loopBefore := cpuTime(t, pid), cpuTime(t, loopPid)
	netnstest.Poll(t, 60*time.Second, 20*time.Millisecond, "300 ms of CPU for the busy loop", func() bool {
		return cpuTime(t, loopPid)-loopBefore >= 300*time.Millisecond
	})
	used, busy = cpuTime(t, pid)-before, cpuTime(t, loopPid)-loopBefore
	if err := loop.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	return used, busy
}

// cpuTime returns the user and system time process pid has used.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	mustNoErr(t, err)
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th of them, in clock ticks (100 per second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestCommandSocketEOF checks that a worker whose supervisor went away
// (command socket closed) exits with status 0.
func TestCommandSocketEOF(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "eof")
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			w := startWorker(t, ns, backend, 0, -1)
			w.waitStats("the first snapshot", "", func(s stats.Snapshot, _ stats.RuleCounters) bool { return s.Seq > 0 })
			w.ctl.Close()
			select {
			case err := <-w.done:
				w.done <- err
				if err != nil {
					t.Fatalf("worker exited with %v, want status 0", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("worker still running 5 s after its command socket closed")
			}
		})
	}
}

// TestAutoBackend checks that auto picks io_uring where the kernel offers
// it, mmsg otherwise, and logs the choice and why.
func TestAutoBackend(t *testing.T) {
	netnstest.RequireRoot(t)
	want, reason := BackendUring, `"reason":"io_uring available"`
	if err := probeUring(); err != nil {
		want, reason = BackendMmsg, `"reason":"io_uring unavailable`
	}
	w := startWorker(t, netnstest.New(t, "auto"), BackendAuto, 0, -1)
	w.waitStats("the first snapshot", "", func(s stats.Snapshot, _ stats.RuleCounters) bool { return s.Seq > 0 })
	if s, _ := w.snapshot(""); s.Backend != want {
		t.Errorf("auto chose %q, want %q", s.Backend, want)
	}
	logs := strings.Join(w.logLines(), "\n")
	if !strings.Contains(logs, `"msg":"backend chosen"`) || !strings.Contains(logs, reason) {
		t.Errorf("logs do not say which backend and why (%s):\n%s", reason, logs)
	}
}

// probeUring tells whether this process can set up the uring backend.
func probeUring() error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w := &worker{log: testLogger(nil)}
		b, err := newUring(w)
		if err == nil {
			b.close()
		}
		errc <- err
	}()
	return <-errc
}

// TestQueuedForTheNextWorker stops a worker, sends a stream to its input
// while it is stopped, kills it and starts the next worker of its slot on
// the same socket, which the supervisor keeps (here heldInputs): the next
// worker relays what the socket queued for the slot (its receive queue, or
// the ring blocks the first worker left), in order and once, and every
// datagram sent is either relayed or counted in kernel_drops. In each
// ingress mode.
func TestQueuedForTheNextWorker(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range ingressModes {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t)
			held := newHeldInputs(t, relaysock.FanoutHash, -1)
			rules := []controlproto.WorkerRule{tp.rule("queued", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")}
			first := startWorkerWith(t, tp.relay, mode, 0, -1, held.opener(0))
			first.sync(rules)
			k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
			src := source{tp.src, "s0", src4}
			src.send(t, "239.1.1.1:5001", 1, 100, 1000, 10000)
			k.expect(t, 1, 100)

			mustNoErr(t, first.cmd.Process.Signal(unix.SIGSTOP))
			const n = 3000
			src.send(t, "239.1.1.1:5001", 2, n, 1000, 20000)
			first.kill()
			next := startWorkerWith(t, tp.relay, mode, 0, -1, held.opener(0))
			next.sync(rules)
			// Without a ring, the stopped worker's io_uring may still
			// have taken datagrams into its buffers (the kernel completes
			// armed receives without the task running); they die with it
			// uncounted, as in TestHashFanoutKeepsOrder. With a ring the
			// next worker takes over every frame.
			var uncounted uint64
			if _, ring, _ := strings.Cut(mode, "+"); ring == noRing {
				uncounted = uringBufs
			}
			// What the first worker was about to send when it was
			// stopped may or may not have left: the next one counts it
			// as restart_unconfirmed.
			netnstest.WaitFor(t, 10*time.Second, "relayed + kernel_drops to reach the datagrams sent", func() bool {
				_, rc := next.snapshot("queued")
				c := next.counters()
				return rc.PacketsIn+c.KernelDrops+c.RestartUnconfirmed+uncounted >= n
			})
			_, rc := next.snapshot("queued")
			drops, unsure := next.counters().KernelDrops, next.counters().RestartUnconfirmed
			if sum := rc.PacketsIn + drops; sum > n || sum+unsure+uncounted < n || rc.PacketsIn == 0 {
				t.Errorf("the next worker relayed %d, kernel_drops %d, restart_unconfirmed %d: want what was queued relayed, the sum %d (at most %d uncounted)",
					rc.PacketsIn, drops, unsure, n, uncounted)
			}
			k.expect(t, 2, int(rc.PacketsIn))
			if _, ring, _ := strings.Cut(mode, "+"); ring != noRing && countLogs(next, "receive ring taken over") == 0 {
				t.Error("the next worker did not log taking over the ring")
			}
			t.Logf("relayed %d queued datagrams in order, kernel_drops %d", rc.PacketsIn, drops)
		})
	}
}

// TestHashFanoutKeepsOrder runs two workers pinned to cores 0 and 1 on one
// input in hash mode, their sockets held per slot as the supervisor holds
// them, and a sender that moves between the two cores every 50 datagrams,
// so that the stream reaches the relay on both: it leaves in order, each
// datagram once, relayed by one worker. Then both workers are killed with
// SIGKILL in the middle of a second stream and replaced: the stream goes on
// in order, without duplicates, and with rings every datagram lost is
// counted in kernel_drops; without rings, the datagrams a killed worker had
// received and not sent yet (at most one batch of its buffers) are lost
// uncounted. In each ingress mode.
func TestHashFanoutKeepsOrder(t *testing.T) {
	netnstest.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs for the sender to hop between")
	}
	for _, mode := range ingressModes {
		t.Run(mode, func(t *testing.T) {
			tp := newTopo(t)
			held := newHeldInputs(t, relaysock.FanoutHash, 0, 1)
			rules := []controlproto.WorkerRule{tp.rule("hash", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1")}
			start := func() []*workerProc {
				ws := make([]*workerProc, 2)
				for i := range ws {
					ws[i] = startWorkerWith(t, tp.relay, mode, i, i, held.opener(i))
					ws[i].sync(rules)
				}
				return ws
			}
			sum := func(ws []*workerProc, f func(stats.WorkerCounters, stats.RuleCounters) uint64) uint64 {
				var n uint64
				for _, w := range ws {
					s, rc := w.snapshot("hash")
					n += f(s.Counters, rc)
				}
				return n
			}
			relayed := func(_ stats.WorkerCounters, rc stats.RuleCounters) uint64 { return rc.PacketsIn }
			drops := func(c stats.WorkerCounters, _ stats.RuleCounters) uint64 { return c.KernelDrops }

			ws := start()
			k := newSink(t, tp.sink1, "k1", "239.2.2.2:6000")
			src := source{tp.src, "s0", src4}
			const n1, n2 = 4000, 10000
			src.sendStream(t, "239.1.1.1:5001", stream{id: 1, count: n1, size: fixedSize(1000), pps: 10000, hop: []int{0, 1}})
			k.expect(t, 1, n1)
			netnstest.WaitFor(t, 5*time.Second, "the workers to count the first stream", func() bool {
				return sum(ws, relayed) == n1
			})
			busy := 0
			for _, w := range ws {
				if _, rc := w.snapshot("hash"); rc.PacketsIn > 0 {
					busy++
				}
			}
			if busy != 1 {
				t.Errorf("%d workers relayed the stream, want 1: one flow goes to one worker", busy)
			}

			dropsBefore := sum(ws, drops)
			sent := make(chan error, 1)
			go func() {
				sent <- tp.src.Do(func() error {
					return sendStream("s0", src4, "239.1.1.1:5001", stream{id: 2, count: n2, size: fixedSize(1000), pps: 5000, hop: []int{0, 1}})
				})
			}()
			netnstest.WaitFor(t, 10*time.Second, "a part of the second stream relayed", func() bool {
				return k.result(2).Received >= n2/5
			})
			for _, w := range ws {
				w.kill()
			}
			ws = start()
			mustNoErr(t, <-sent)
			var uncounted uint64 // the buffers of both killed workers
			if _, ring, _ := strings.Cut(mode, "+"); ring == noRing {
				uncounted = 2 * uringBufs
			}
			// The datagrams a killed worker was about to send may or may
			// not have left: the next worker counts them as
			// restart_unconfirmed.
			unconfirmed := func(c stats.WorkerCounters, _ stats.RuleCounters) uint64 { return c.RestartUnconfirmed }
			netnstest.WaitFor(t, 10*time.Second, "delivered + kernel_drops to reach the datagrams sent", func() bool {
				return uint64(k.result(2).Received)+sum(ws, drops)+dropsBefore+sum(ws, unconfirmed)+uncounted >= n2
			})
			got, lost, unsure := k.result(2), sum(ws, drops)+dropsBefore, sum(ws, unconfirmed)
			accounted := uint64(got.Received) + lost
			if got.Reordered != 0 || got.Duplicates != 0 || len(got.Bad) != 0 || accounted > n2 || accounted+unsure+uncounted < n2 {
				t.Errorf("second stream across the kill: %+v, kernel_drops %d, restart_unconfirmed %d; want it in order, once, and %d datagrams delivered or counted, of which at most %d not",
					got, lost, unsure, n2, uncounted)
			}
			t.Logf("across the kill: delivered %d, kernel_drops %d, uncounted %d", got.Received, lost, n2-accounted)
		})
	}
}
