package topology

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
	"github.com/mcrelay/mcr/tracing"
)

// traceStats is the stats interval of the trace scenarios: events reach
// the supervisor once per interval.
const traceStats = "200ms"

// mcastSender returns a UDP socket in ns, bound to addr, that sends
// multicast out of ifname: the scenarios know every payload they send.
func mcastSender(t *testing.T, ns *netnstest.NS, ifname, addr string) *net.UDPConn {
	t.Helper()
	idx := ns.IfIndex(ifname)
	var c *net.UDPConn
	if err := ns.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(idx)})
			}); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			return err
		}
		c = pc.(*net.UDPConn)
		return nil
	}); err != nil {
		t.Fatalf("sender on %s in %s: %v", ifname, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendTo(t *testing.T, c *net.UDPConn, dst string, payload []byte) {
	t.Helper()
	if _, err := c.WriteToUDP(payload, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))); err != nil {
		t.Fatalf("send to %s: %v", dst, err)
	}
}

// traceReader reads a rule's trace from the daemon on its own connection.
type traceReader struct {
	t     *testing.T
	c     *controlproto.Client
	id    string
	since uint64
}

func (d *daemon) dialTrace(id string) *traceReader {
	d.t.Helper()
	c, err := controlproto.Dial(d.t.Context(), d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return &traceReader{t: d.t, c: c, id: id}
}

func (r *traceReader) call(cmd string) controlproto.TraceResult {
	r.t.Helper()
	var res controlproto.TraceResult
	if err := r.c.Call(r.t.Context(), controlproto.Request{Command: cmd, ID: r.id, Since: r.since}, &res); err != nil {
		r.t.Fatalf("%s %s: %v", cmd, r.id, err)
	}
	return res
}

// waitEvents reads events until match has picked n of those not seen yet,
// and returns the picked ones.
func (r *traceReader) waitEvents(what string, n int, match func(tracing.Event) bool) []tracing.Event {
	r.t.Helper()
	var got []tracing.Event
	waitFor(r.t, 10*time.Second, what, func() bool {
		res := r.call(controlproto.CmdGetTrace)
		r.since = res.Next
		for _, e := range res.Events {
			if match(e) {
				got = append(got, e)
			}
		}
		return len(got) >= n
	})
	return got
}

// primeDst is where primed sends: the rule's group on a port no rule has,
// so its datagrams show only as unmatched and never as relayed.
const primeDst = "239.1.1.1:5999"

// primed waits until the workers trace: EnableTrace replies once the
// supervisor has queued the trace for them, not once they apply it, and a
// datagram that arrives before is not traced. It sends to primeDst until
// one shows as unmatched (a traced input lets such datagrams up). Primes
// still in flight show up later: matchers of unmatched events skip them.
func (r *traceReader) primed(snd *net.UDPConn) {
	r.t.Helper()
	waitFor(r.t, 10*time.Second, "the workers to trace the rule", func() bool {
		res := r.call(controlproto.CmdGetTrace)
		r.since = res.Next
		for _, e := range res.Events {
			if e.Kind == tracing.Unmatched && e.Destination == primeDst {
				return true
			}
		}
		sendTo(r.t, snd, primeDst, []byte("prime"))
		return false
	})
}

// TestTraceShowsEveryDatagram traces a rule with two outputs: each
// datagram sent shows as received and as sent to both outputs; a datagram
// to the rule's group on another port shows as unmatched, wrong_port;
// with the output interface down the sends show as dropped, output_down;
// the trace goes on after the workers were killed and restarted.
func TestTraceShowsEveryDatagram(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Flags: []string{"--stats-interval", traceStats}})
	id := d.add(rule("t", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf), out("239.2.2.3", 6001, outIf)))
	d.waitReady()
	tr := d.dialTrace(id)
	if res := tr.call(controlproto.CmdEnableTrace); !res.Enabled {
		t.Fatalf("EnableTrace: %+v", res)
	}
	snd := mcastSender(t, l.src, srcIf, "10.1.0.1:40000")
	tr.primed(snd)
	const n = 5
	for i := range n {
		sendTo(t, snd, "239.1.1.1:5000", fmt.Appendf(nil, "datagram %d", i))
	}
	relayed := func(e tracing.Event) bool { return e.Kind == tracing.Received || e.Kind == tracing.Sent }
	evs := tr.waitEvents(fmt.Sprintf("%d datagrams received and sent to 2 outputs", n), 3*n, relayed)
	received, sent := 0, map[int]int{}
	for _, e := range evs {
		switch e.Kind {
		case tracing.Received:
			received++
			if e.Source != "10.1.0.1:40000" || e.Destination != "239.1.1.1:5000" || e.Size != len("datagram 0") {
				t.Errorf("received event %+v: want from 10.1.0.1:40000 to 239.1.1.1:5000, 10 bytes", e)
			}
		case tracing.Sent:
			sent[*e.Output]++
			if want := []string{"239.2.2.2:6000", "239.2.2.3:6001"}[*e.Output]; e.Destination != want || e.Size != 10 {
				t.Errorf("sent event %+v: want to %s, 10 bytes", e, want)
			}
		}
	}
	if received != n || sent[0] != n || sent[1] != n {
		t.Errorf("trace: %d received, %d and %d sent to the outputs; want %d of each", received, sent[0], sent[1], n)
	}

	sendTo(t, snd, "239.1.1.1:5001", []byte("wrong port"))
	sendTo(t, snd, "239.1.1.9:5000", []byte("wrong group"))
	un := tr.waitEvents("the wrong port and group as unmatched", 2, func(e tracing.Event) bool {
		return e.Kind == tracing.Unmatched && e.Destination != primeDst
	})
	if un[0].Reason != tracing.WrongPort || un[0].Destination != "239.1.1.1:5001" ||
		un[1].Reason != tracing.WrongGroup || un[1].Destination != "239.1.1.9:5000" {
		t.Errorf("unmatched events %+v, want wrong_port to 239.1.1.1:5001, then wrong_group to 239.1.1.9:5000", un)
	}

	l.relay.MustRun("ip", "link", "set", outIf, "down")
	sendTo(t, snd, "239.1.1.1:5000", []byte("output down"))
	drops := tr.waitEvents("the sends to the down output as dropped", 2, func(e tracing.Event) bool { return e.Kind == tracing.Dropped })
	for _, e := range drops {
		if e.Reason != tracing.OutputDown || e.Output == nil {
			t.Errorf("dropped event %+v: want output_down on an output", e)
		}
	}

	// A restarted worker traces what its predecessor did.
	l.relay.MustRun("ip", "link", "set", outIf, "up")
	d.killWorkers()
	sendTo(t, snd, "239.1.1.1:5000", []byte("after a restart"))
	tr.waitEvents("the datagram after the worker restart as received", 1, func(e tracing.Event) bool {
		return e.Kind == tracing.Received && e.Size == len("after a restart")
	})
}

// TestTraceEndsWithItsConnection runs `mcrctl trace --follow` and kills it:
// the trace ends with its connection.
func TestTraceEndsWithItsConnection(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Flags: []string{"--stats-interval", traceStats}})
	id := d.add(rule("t", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	p := netnstest.Start(t, l.relay, testbin.Path(t, "mcrctl"), "--socket", d.socket, "trace", id, "--follow")
	tr := d.dialTrace(id)
	waitFor(t, 5*time.Second, "mcrctl trace to enable the trace", func() bool { return tr.call(controlproto.CmdGetTrace).Enabled })
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the trace to end with mcrctl's connection", func() bool { return !tr.call(controlproto.CmdGetTrace).Enabled })
}

// TestCaptureReadByTcpdump captures what a rule relays while n datagrams
// of known payloads pass, and reads the file back with tcpdump: n packets,
// each with the payload sent.
func TestCaptureReadByTcpdump(t *testing.T) {
	t.Parallel()
	netnstest.RequireTools(t, "the capture is read back by tcpdump", "tcpdump")
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Flags: []string{"--stats-interval", traceStats}})
	id := d.add(rule("t", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf), out("239.2.2.3", 6001, outIf)))
	d.waitReady()
	const n = 8
	path := filepath.Join(t.TempDir(), "t.pcap")
	p := netnstest.Start(t, l.relay, testbin.Path(t, "mcrctl"), "--socket", d.socket,
		"capture", id, "--write", path, "--output", "1", "--count", fmt.Sprint(n), "--duration", "20s")
	tr := d.dialTrace(id)
	waitFor(t, 5*time.Second, "mcrctl capture to enable the trace", func() bool { return tr.call(controlproto.CmdGetTrace).Enabled })
	snd := mcastSender(t, l.src, srcIf, "10.1.0.1:40000")
	tr.primed(snd)
	var want []string
	for i := range n {
		payload := fmt.Appendf(nil, "capture %d %s", i, strings.Repeat("x", 10*i))
		want = append(want, hex.EncodeToString(payload))
		sendTo(t, snd, "239.1.1.1:5000", payload)
	}
	if err := p.Wait(20 * time.Second); err != nil {
		t.Fatalf("mcrctl capture: %v\n%s", err, p.Output())
	}
	if !strings.Contains(p.Output(), fmt.Sprintf("%d datagrams of rule t written to %s", n, path)) {
		t.Errorf("mcrctl capture says:\n%s", p.Output())
	}
	out, err := exec.Command("tcpdump", "-nn", "-x", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	got := tcpdumpPayloads(t, string(out))
	if len(got) != n {
		t.Fatalf("tcpdump read %d packets, want %d:\n%s", len(got), n, out)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("packet %d: payload %s, want %s", i, got[i], want[i])
		}
	}
	if !strings.Contains(string(out), "> 239.2.2.3.6001: UDP") {
		t.Errorf("tcpdump shows no datagram to output 1, 239.2.2.3:6001:\n%s", out)
	}
}

// tcpdumpPayloads returns the UDP payloads, hex, of the IPv4 packets
// without options that `tcpdump -x` printed.
func tcpdumpPayloads(t *testing.T, out string) []string {
	t.Helper()
	var pkts []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			pkts = append(pkts, cur.String()[2*28:]) // IPv4 and UDP headers
			cur.Reset()
		}
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[0], "0x") {
			cur.WriteString(strings.Join(f[1:], ""))
			continue
		}
		if !strings.HasPrefix(line, "reading") {
			flush()
		}
	}
	flush()
	return pkts
}
