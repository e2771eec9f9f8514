package worker

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// inputCases extend relayCases (TestRelay runs them against each backend,
// with and without receive rings): what an input relays is its own
// untagged traffic with right checksums, nothing else.
var inputCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"VLAN-tagged frames on the untagged input are not relayed", testTaggedOnParent},
	{"a rule on the VLAN interface relays its VLAN, the parent's does not", testVLANInterface},
	{"datagrams with bad UDP checksums are counted, never relayed", testBadChecksums},
}

// hasRing reports whether the worker's inputs have receive rings, from its
// "input open" log records.
func (w *workerProc) hasRing() bool {
	for _, l := range w.logLines() {
		if strings.Contains(l, `"input open"`) {
			return !strings.Contains(l, `"ring_frames":0,"ring_blocks":0`)
		}
	}
	w.t.Fatal("no input was opened")
	return false
}

// setOffload switches features of ifname in ns with ethtool, and back at
// cleanup; it skips the test when ethtool is missing.
func setOffload(t *testing.T, ns *netnstest.NS, ifname string, on bool, features ...string) {
	t.Helper()
	state, undo := "on", "off"
	if !on {
		state, undo = "off", "on"
	}
	args := []string{"-K", ifname}
	back := []string{"-K", ifname}
	for _, f := range features {
		args = append(args, f, state)
		back = append(back, f, undo)
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("ethtool not installed")
	}
	if out, err := ns.Run("ethtool", args...); err != nil {
		t.Fatalf("ethtool %s: %v: %s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() { _, _ = ns.Run("ethtool", back...) })
}

// testTaggedOnParent injects frames of one group and port into r0, each
// kind its own stream: untagged and priority-tagged ones (VLAN ID 0) are
// r0's and relayed; 802.1Q, 802.1ad and QinQ ones belong to VLANs and are
// not, whether r0's VLAN offload is on or off (the kernel moves the outer
// tag out of the frame either way). With a receive ring the worker sees
// and counts every tagged frame; without one the kernel filter drops those
// whose tag left the frame, and the worker counts the one whose tag is
// still in it (behind a priority tag).
func testTaggedOnParent(t *testing.T, tp *topo, w *workerProc) {
	w.sync([]controlproto.WorkerRule{tp.rule("parent", "239.1.1.20:5020@r0", "239.2.2.20:6020@r1")})
	k := newSink(t, tp.sink1, "k1", "239.2.2.20:6020")
	src, dst := netip.MustParseAddrPort("10.0.1.1:4000"), netip.MustParseAddrPort("239.1.1.20:5020")
	const n = 20 // frames of each kind per round
	ip := func(stream uint32, seq int) []byte {
		return packettest.BuildUDP4(src, dst, payload(stream, uint32(seq), 200))
	}
	kinds := []struct {
		stream  uint32
		name    string
		frame   func(ip []byte) []byte
		relayed bool
		counted bool // as vlan_tagged without a ring (with one, every tagged kind is)
	}{
		{200, "untagged", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0) }, true, false},
		{201, "802.1Q VLAN 100", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0, 0x8100, 100) }, false, false},
		{202, "802.1ad VLAN 100", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0, 0x88a8, 100) }, false, false},
		{203, "priority tag, PCP 5", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0, 0x8100, 0xa000) }, true, false},
		// QinQ whose inner tag's TCI and EtherType are the first four
		// bytes of the IP header (VLAN 1280 behind service VLAN 200):
		// after the outer tag is taken out, the network header the
		// kernel filter reads is a valid datagram of the group.
		{204, "QinQ, service VLAN 200", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0x8100, 0x88a8, 200) }, false, false},
		// The same inner tag behind a priority tag: the kernel filter
		// sees no VLAN ID, the worker sees EtherType 0x8100.
		{205, "VLAN 1280 behind a priority tag", func(ip []byte) []byte { return packettest.EthernetFrame(ip, 0x8100, 0x8100, 0) }, false, true},
	}
	// Both rounds switch r0's VLAN offload; without ethtool each would
	// skip and the rule's totals below would never be reached.
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("ethtool not installed")
	}
	ring := w.hasRing()
	for round, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("rx VLAN offload %v", offload), func(t *testing.T) {
			setOffload(t, tp.relay, "r0", offload, "rxvlan", "rx-vlan-stag-hw-parse")
			before := w.counters()
			var frames [][]byte
			for i := range n {
				for _, kd := range kinds {
					frames = append(frames, kd.frame(ip(kd.stream, round*n+i)))
				}
			}
			mustNoErr(t, tp.src.Do(func() error { return packettest.InjectFrames("s0", frames...) }))
			wantVLAN, wantRx := 0, 0
			for _, kd := range kinds {
				switch {
				case kd.relayed:
					wantRx += n
				case ring || kd.counted:
					wantVLAN += n
					wantRx += n
				}
			}
			// So far, the relayed kinds of every round.
			total := (round + 1) * n
			for _, kd := range kinds {
				if kd.relayed {
					netnstest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d datagrams of %s", total, kd.name), func() bool {
						return k.result(kd.stream).Received >= total
					})
				}
			}
			w.waitStats("every frame counted", "", func(s stats.Snapshot, _ stats.RuleCounters) bool {
				return s.Counters.RxPackets-before.RxPackets >= uint64(wantRx)
			})
			after := w.counters()
			got := stats.WorkerCounters{
				RxPackets:  after.RxPackets - before.RxPackets,
				VLANTagged: after.VLANTagged - before.VLANTagged,
				NoMatch:    after.NoMatch - before.NoMatch,
				Malformed:  after.Malformed - before.Malformed,
				NotUDP:     after.NotUDP - before.NotUDP,
			}
			if diff := cmp.Diff(stats.WorkerCounters{RxPackets: uint64(wantRx), VLANTagged: uint64(wantVLAN)}, got); diff != "" {
				t.Errorf("counter deltas, ring %v (-want +got):\n%s", ring, diff)
			}
			for _, kd := range kinds {
				r := k.result(kd.stream)
				want := 0
				if kd.relayed {
					want = total
				}
				if r.Received != want || r.Distinct != want || len(r.Bad) != 0 {
					t.Errorf("%s: sink got %+v, want %d intact datagrams", kd.name, r, want)
				}
			}
		})
	}
	w.waitRule("parent", stats.RuleCounters{PacketsIn: 4 * n, BytesIn: 4 * n * 200, Outputs: outs(4*n, 200, 1)})
}

// testVLANInterface runs a real VLAN: s0.100 on the source side sends
// tagged datagrams into r0, whose VLAN interface r0.100 has a rule, and r0
// has one for the same group and port. Only the VLAN's rule relays them,
// with the relay's VLAN offload on and off.
func testVLANInterface(t *testing.T, tp *topo, w *workerProc) {
	if out, err := tp.relay.Run("ip", "link", "add", "link", "r0", "name", "r0.100", "type", "vlan", "id", "100"); err != nil {
		if strings.Contains(out, "Unknown device type") || strings.Contains(out, "not supported") {
			t.Skipf("the kernel has no 802.1Q VLAN interfaces (CONFIG_VLAN_8021Q): %s", strings.TrimSpace(out))
		}
		t.Fatalf("add r0.100: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = tp.relay.Run("ip", "link", "del", "r0.100") })
	tp.src.MustRun("ip", "link", "add", "link", "s0", "name", "s0.100", "type", "vlan", "id", "100")
	t.Cleanup(func() { _, _ = tp.src.Run("ip", "link", "del", "s0.100") })
	// Not SetupLink: sysctl reads the dot in r0.100 as a separator; only
	// IPv4 is used here, so DAD does not matter.
	for _, l := range []struct {
		ns         *netnstest.NS
		name, addr string
	}{{tp.relay, "r0.100", "10.100.0.2/24"}, {tp.src, "s0.100", "10.100.0.1/24"}} {
		l.ns.MustRun("ip", "addr", "add", l.addr, "dev", l.name)
		l.ns.MustRun("ip", "link", "set", l.name, "up")
	}
	tp.ifindex["r0.100"] = tp.relay.IfIndex("r0.100")
	w.sync([]controlproto.WorkerRule{
		tp.rule("vlan100", "239.1.1.22:5022@r0.100", "239.2.2.22:6022@r1"),
		tp.rule("parent", "239.1.1.22:5022@r0", "239.2.2.23:6022@r1"),
	})
	kVLAN := newSink(t, tp.sink1, "k1", "239.2.2.22:6022")
	kParent := newSink(t, tp.sink1, "k1", "239.2.2.23:6022")
	ring := w.hasRing()
	const n = 200
	for i, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("rx VLAN offload %v", offload), func(t *testing.T) {
			setOffload(t, tp.relay, "r0", offload, "rxvlan")
			before := w.counters()
			stream := uint32(220 + i)
			source{tp.src, "s0.100", netip.MustParseAddr("10.100.0.1")}.send(t, "239.1.1.22:5022", stream, n, 300, 10000)
			kVLAN.expect(t, stream, n)
			wantVLAN := uint64(0)
			if ring {
				wantVLAN = n // the parent's ring sees the tag; without a ring its filter drops them
			}
			w.waitStats("the tagged frames counted on r0", "", func(s stats.Snapshot, _ stats.RuleCounters) bool {
				return s.Counters.VLANTagged-before.VLANTagged >= wantVLAN
			})
			if got := kParent.result(stream); got.Received != 0 {
				t.Errorf("the rule on r0 relayed VLAN 100's datagrams: %+v", got)
			}
			if got := w.counters().VLANTagged - before.VLANTagged; got != wantVLAN {
				t.Errorf("vlan_tagged grew by %d, want %d (ring %v)", got, wantVLAN, ring)
			}
		})
	}
	_, parent := w.snapshot("parent")
	if parent.PacketsIn != 0 {
		t.Errorf("rule on r0 counted %d datagrams of VLAN 100", parent.PacketsIn)
	}
}

// testBadChecksums injects, into one stream per family, datagrams with
// wrong and with zero UDP checksums between good ones: the wrong ones and
// IPv6's zero ones are counted as bad_checksum, exactly, and not relayed;
// IPv4's zero ones (no checksum) and the good ones are relayed intact. A
// sender whose checksums the kernel computes in full (its veth's checksum
// offload off, so the relay sees no partial checksum) is verified and
// relayed too.
func testBadChecksums(t *testing.T, tp *topo, w *workerProc) {
	w.sync([]controlproto.WorkerRule{
		tp.rule("csum4", "239.1.1.21:5021@r0", "239.2.2.21:6021@r1"),
		tp.rule("csum6", "[ff3e::21]:5021@r0", "[ff3e::21]:6021@r1"),
	})
	k4 := newSink(t, tp.sink1, "k1", "239.2.2.21:6021")
	k6 := newSink(t, tp.sink1, "k1", "[ff3e::21]:6021")
	src4, dst4 := netip.MustParseAddrPort("10.0.1.1:4000"), netip.MustParseAddrPort("239.1.1.21:5021")
	src6, dst6 := netip.MustParseAddrPort("[fd01::1]:4000"), netip.MustParseAddrPort("[ff3e::21]:5021")
	// sum rewrites the UDP checksum of p (at udpOff) with f of the right one.
	sum := func(p []byte, udpOff int, f func(uint16) uint16) []byte {
		binary.BigEndian.PutUint16(p[udpOff+6:], f(binary.BigEndian.Uint16(p[udpOff+6:])))
		return p
	}
	wrong := func(c uint16) uint16 { return c ^ 0x0400 }
	zero := func(uint16) uint16 { return 0 }
	const good, bad, zeros = 30, 7, 5
	var pkts [][]byte
	for i := range good {
		pkts = append(pkts, packettest.BuildUDP4(src4, dst4, payload(210, uint32(i), 500)),
			packettest.BuildUDP6(src6, dst6, payload(211, uint32(i), 500)))
		if i < bad {
			pkts = append(pkts, sum(packettest.BuildUDP4(src4, dst4, payload(212, uint32(i), 500)), 20, wrong),
				sum(packettest.BuildUDP6(src6, dst6, payload(213, uint32(i), 500)), 40, wrong))
		}
		if i < zeros {
			pkts = append(pkts, sum(packettest.BuildUDP4(src4, dst4, payload(214, uint32(i), 500)), 20, zero),
				sum(packettest.BuildUDP6(src6, dst6, payload(215, uint32(i), 500)), 40, zero))
		}
	}
	before := w.counters()
	inject(t, tp.src, "s0", pkts...)
	k4.expect(t, 210, good)
	k6.expect(t, 211, good)
	k4.expect(t, 214, zeros)
	w.waitRule("csum4", stats.RuleCounters{PacketsIn: good + zeros, BytesIn: (good + zeros) * 500, Outputs: outs(good+zeros, 500, 1)})
	w.waitRule("csum6", stats.RuleCounters{PacketsIn: good, BytesIn: good * 500, Outputs: outs(good, 500, 1)})
	after := w.counters()
	if got, want := after.BadChecksum-before.BadChecksum, uint64(2*bad+zeros); got != want {
		t.Errorf("bad_checksum grew by %d, want %d: %d wrong per family and %d zero over IPv6", got, want, bad, zeros)
	}
	if got, want := after.RxPackets-before.RxPackets, uint64(2*good+2*bad+2*zeros); got != want {
		t.Errorf("rx_packets grew by %d, want %d", got, want)
	}
	for _, s := range []struct {
		k      *sink
		stream uint32
	}{{k4, 212}, {k6, 213}, {k6, 215}} {
		if r := s.k.result(s.stream); r.Received != 0 {
			t.Errorf("stream %d (bad checksums) was relayed: %+v", s.stream, r)
		}
	}

	// Full checksums from the kernel of a real sender, verified.
	setOffload(t, tp.src, "s0", false, "tx")
	before = w.counters()
	source{tp.src, "s0", netip.MustParseAddr("10.0.1.1")}.send(t, "239.1.1.21:5021", 216, 200, 333, 10000)
	source{tp.src, "s0", netip.MustParseAddr("fd01::1")}.send(t, "[ff3e::21]:5021", 217, 200, 333, 10000)
	k4.expect(t, 216, 200)
	k6.expect(t, 217, 200)
	if got := w.counters().BadChecksum - before.BadChecksum; got != 0 {
		t.Errorf("bad_checksum grew by %d for a sender's kernel-computed checksums", got)
	}
}
