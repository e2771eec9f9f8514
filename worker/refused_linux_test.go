package worker

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet"
)

// refusedCases extend relayCases (TestRelay runs them against each
// backend) with a unicast output to a port nobody listens on, like a
// downstream relay that captures with AF_PACKET: the host answers each
// datagram with an ICMP port unreachable. A connected socket would report
// it as ECONNREFUSED on its next send instead of sending; the egress
// sockets are not connected, and the kernel keeps such errors from them
// (udp(7): only connected sockets get them without IP_RECVERR).
var refusedCases = []struct {
	name string
	run  func(t *testing.T, tp *topo, w *workerProc)
}{
	{"unicast output answered by ICMP port unreachable loses nothing", testRefused},
}

func testRefused(t *testing.T, tp *topo, w *workerProc) {
	const count, size = 1000, 500
	// Answer every datagram: ICMP errors are rate limited per host
	// (icmp_ratelimit) and per namespace (icmp_msgs_per_sec) otherwise.
	tp.sink1.MustRun("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=1000000")
	icmpBefore := icmpOutDestUnreachs(t, tp)
	k := captureUDP(t, tp, "k1", 6050)
	w.sync([]controlproto.WorkerRule{tp.rule("refused", "239.1.1.50:5050@r0", "10.0.2.2:6050@r1")})
	before := w.counters()
	source{tp.src, "s0", src4}.send(t, "239.1.1.50:5050", 50, count, size, 5000)
	k.expect(t, 50, count)
	w.waitRule("refused", stats.RuleCounters{PacketsIn: count, BytesIn: count * size, Outputs: outs(count, size, 1)})
	if errs := w.counters().EgressErrors - before.EgressErrors; errs != 0 {
		t.Errorf("egress errors grew by %d, want 0", errs)
	}
	// Without ICMP errors the test would prove nothing. The sink answers
	// a UDP GSO aggregate once, so there are fewer errors than datagrams.
	if n := icmpOutDestUnreachs(t, tp) - icmpBefore; n < count/gsoMaxSegments {
		t.Errorf("the sink sent %d ICMP destination unreachable, want at least %d", n, count/gsoMaxSegments)
	}
}

// icmpOutDestUnreachs returns the ICMP destination unreachable messages
// sink1 has sent (/proc/net/snmp: a line of Icmp field names, then one of
// values).
func icmpOutDestUnreachs(t *testing.T, tp *topo) int {
	t.Helper()
	out := tp.sink1.MustRun("cat", "/proc/net/snmp")
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "OutDestUnreachs"); i > 0 && i < len(f) {
			n, err := strconv.Atoi(f[i])
			mustNoErr(t, err)
			return n
		}
	}
	t.Fatalf("no Icmp OutDestUnreachs in /proc/net/snmp:\n%s", out)
	return 0
}

// captureUDP returns a sink fed, instead of a UDP socket, by an AF_PACKET
// capture of the UDP datagrams to port arriving on ifname in sink1, so
// that no socket listens on that port. The capture reads virtio_net_hdr
// like the relay's inputs, to split UDP GSO aggregates.
func captureUDP(t *testing.T, tp *topo, ifname string, port uint16) *sink {
	t.Helper()
	s := &sink{got: map[uint32]map[uint32]int{}}
	var fd int
	mustNoErr(t, tp.sink1.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index})
	}))
	var stop atomic.Bool
	done := make(chan struct{})
	t.Cleanup(func() {
		stop.Store(true)
		<-done
		unix.Close(fd)
	})
	go func() {
		defer close(done)
		buf := make([]byte, slotSize)
		var vh vnetHdr
		var dg packet.Datagram
		for !stop.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || !vh.parse(buf[:n]) {
				continue
			}
			ip := buf[vnetHdrLen+14 : n]
			if packet.Parse(ip, &dg) != packet.OK || dg.DstPort != port {
				continue
			}
			segs, size, ok := vh.segments(dg.PayloadLen)
			if !ok {
				continue
			}
			for off, end := dg.PayloadOff, dg.PayloadOff+dg.PayloadLen; segs > 0; segs-- {
				s.check(ip[off : off+min(size, end-off)])
				off += size
			}
		}
	}()
	return s
}
