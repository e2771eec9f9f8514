package worker

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
)

// gsoInputCases extend relayCases (TestRelay runs them against each
// backend) with UDP GSO input: a sender using UDP_SEGMENT hands the
// relay's veth unsegmented aggregates, and every datagram they carry must
// be relayed and counted on its own, byte for byte.
var gsoInputCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"UDP GSO input: IPv4 aggregates relayed datagram by datagram", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOInput(t, tp, w, tp.rule("gsoin4", "239.1.1.31:5031@r0", "239.2.2.31:6031@r1", "239.2.2.31:6031@r2"),
			source{tp.src, "s0", src4}, "239.1.1.31:5031",
			newSink(t, tp.sink1, "k1", "239.2.2.31:6031"), newSink(t, tp.sink2, "k2", "239.2.2.31:6031"))
	}},
	{"UDP GSO input: IPv6 aggregates relayed datagram by datagram", func(t *testing.T, tp *topo, w *workerProc) {
		testGSOInput(t, tp, w, tp.rule("gsoin6", "[ff3e::31]:5031@r0", "[ff3e::32]:6031@r1"),
			source{tp.src, "s0", src6}, "[ff3e::31]:5031",
			newSink(t, tp.sink1, "k1", "[ff3e::32]:6031"))
	}},
}

// GSO input stream: gsoInCount datagrams of gsoInSize bytes, gsoInPerSend
// per UDP_SEGMENT send, the very last one gsoInLast bytes.
const (
	gsoInCount   = 1000
	gsoInSize    = 1000
	gsoInPerSend = 20
	gsoInLast    = 300
)

func testGSOInput(t *testing.T, tp *topo, w *workerProc, rule controlproto.WorkerRule, from source, dst string, sinks ...*sink) {
	w.sync([]controlproto.WorkerRule{rule})
	txBefore := tp.src.LinkStat(from.ifname, "tx_packets")
	before := w.counters()
	mustNoErr(t, from.ns.Do(func() error { return sendSegmented(from.ifname, from.src, dst, 3) }))
	for _, k := range sinks {
		k.expect(t, 3, gsoInCount)
	}
	bytes := (gsoInCount-1)*gsoInSize + gsoInLast
	want := stats.RuleCounters{PacketsIn: gsoInCount, BytesIn: uint64(bytes), Outputs: outs(gsoInCount, 0, len(rule.Outputs))}
	for i := range want.Outputs {
		want.Outputs[i].BytesOut = uint64(bytes)
	}
	w.waitRule(rule.ID, want)
	// The sender's veth counts an aggregate once: fewer packets than
	// datagrams show that the relay really received aggregates.
	if tx := tp.src.LinkStat(from.ifname, "tx_packets") - txBefore; tx >= gsoInCount {
		t.Errorf("sender's veth sent %d packets for %d datagrams: no aggregates, the test proves nothing", tx, gsoInCount)
	}
	if c := w.counters(); c.RxPackets-before.RxPackets != gsoInCount || c.Malformed != before.Malformed {
		t.Errorf("rx_packets grew by %d, malformed by %d; want %d and 0",
			c.RxPackets-before.RxPackets, c.Malformed-before.Malformed, gsoInCount)
	}
}

// sendSegmented sends stream id to dst from the calling thread's namespace
// as UDP_SEGMENT sends of gsoInPerSend payloads each.
func sendSegmented(ifname string, src netip.Addr, dst string, id uint32) error {
	ap := netip.MustParseAddrPort(dst)
	c, err := senderConn(ifname, src, ap)
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, gsoInSize)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set UDP_SEGMENT: %w", serr)
	}
	buf := make([]byte, 0, gsoInPerSend*gsoInSize)
	for seq := 0; seq < gsoInCount; {
		buf = buf[:0]
		for ; len(buf) < cap(buf) && seq < gsoInCount; seq++ {
			size := gsoInSize
			if seq == gsoInCount-1 {
				size = gsoInLast
			}
			buf = append(buf, payload(id, uint32(seq), size)...)
		}
		if _, err := c.WriteToUDPAddrPort(buf, ap); err != nil {
			return fmt.Errorf("send up to datagram %d of stream %d: %w", seq, id, err)
		}
	}
	return nil
}
