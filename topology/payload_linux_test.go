package topology

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/mcrgen"
)

// TestRandomSizes relays 2,000 datagrams of random sizes, 1 to 1,472 bytes
// (a full 1,500-byte frame), filled with random bytes, and compares every
// datagram that arrives, byte for byte and in order, with what was sent.
func TestRandomSizes(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	d.add(rule("sizes", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	rng := rand.New(rand.NewPCG(7, 7))
	payloads := make([][]byte, 2000)
	var total int
	for i := range payloads {
		payloads[i] = make([]byte, 1+rng.IntN(1472))
		for j := range payloads[i] {
			payloads[i][j] = byte(rng.Uint32())
		}
		total += len(payloads[i])
	}
	rx := listenUDP(t, l.sink, sinkIf, "239.2.2.2", 6000)
	tx := dialMulticast(t, l.src, srcIf)
	got := make(chan [][]byte, 1)
	go func() { got <- receiveN(rx, len(payloads), 10*time.Second) }()
	sendPaced(t, tx, &net.UDPAddr{IP: net.ParseIP("239.1.1.1"), Port: 5000}, payloads)

	if err := sameDatagrams(payloads, <-got); err != nil {
		t.Error(err)
	}
	d.checkCountedBytes("sizes", uint64(len(payloads)), uint64(total))
}

// TestJumbo relays 8,972-byte payloads, whole 9,000-byte IP packets, over
// links with a 9,000-byte MTU: mcrgen verifies every byte, and the relay
// must have seen no truncated packet and no fragment.
func TestJumbo(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	l.setMTU(9000)
	d := startDaemon(t, l.relay, daemonOptions{})
	d.add(rule("jumbo", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	s := newStream(srcIf, "239.1.1.1", 5000)
	s.Rate, s.Size = 5000, 8972
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, s.Count)
	send(t, l.src, s)

	checkDelivered(t, "sink", r.result(), s.Count, s.Size)
	d.checkCounted("jumbo", s.Count, s.Size, dest("239.2.2.2", 6000, outIf))
	for _, w := range d.stats().Workers {
		if w.Malformed != 0 || w.Fragments != 0 {
			t.Errorf("worker %d counted %d malformed (truncated) packets and %d fragments, want none", w.Worker, w.Malformed, w.Fragments)
		}
	}
}

// TestGSOSender relays a stream from a sender that uses UDP segmentation
// offload, as QUIC stacks and fast media senders do: each send carries 20
// datagrams of 1,000 bytes and the UDP_SEGMENT size. Over a veth the kernel
// hands the relay's input the unsegmented aggregate; the relay must still
// relay 20 datagrams, not one of 20,000 bytes.
func TestGSOSender(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	d.add(rule("gso", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))
	d.waitReady()

	const n, size, perSend = 2000, 1000, 20
	r := startRecv(t, l.sink, sinkIf, "239.2.2.2", 6000, n)
	tx := dialMulticast(t, l.src, srcIf)
	if err := setSockoptInt(tx, unix.SOL_UDP, unix.UDP_SEGMENT, size); err != nil {
		t.Fatalf("set UDP_SEGMENT: %v", err)
	}
	dst := &net.UDPAddr{IP: net.ParseIP("239.1.1.1"), Port: 5000}
	batch := make([]byte, perSend*size)
	for seq := uint64(0); seq < n; seq += perSend {
		for i := range uint64(perSend) {
			mcrgen.FillPayload(batch[i*size:(i+1)*size], mcrgen.Header{Stream: 1, Seq: seq + i, SentUnixNano: time.Now().UnixNano()})
		}
		if _, err := tx.WriteTo(batch, nil, dst); err != nil {
			t.Fatalf("send datagrams %d..%d: %v", seq, seq+perSend-1, err)
		}
		time.Sleep(2 * time.Millisecond) // about 10,000 datagrams a second
	}

	checkDelivered(t, "sink", r.result(), n, size)
	d.checkCounted("gso", n, size, dest("239.2.2.2", 6000, outIf))
}

// setSockoptInt sets an integer socket option on p's socket.
func setSockoptInt(p *ipv4.PacketConn, level, opt, value int) error {
	rc, err := p.PacketConn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, value) }); err != nil {
		return err
	}
	return serr
}

// TestEdgeCases relays the extremes of what a datagram may be: the lowest
// and highest ports, an empty payload, and senders with TTL 1, which a
// multicast router would never forward.
func TestEdgeCases(t *testing.T) {
	t.Parallel()
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{})
	cases := []struct {
		name          string
		in            string
		inPort        int
		out           string
		outPort, size int
		ttl           int
	}{
		{"port 1 to 65535", "239.1.1.1", 1, "239.2.2.1", 65535, 1000, 0},
		{"port 65535 to 1", "239.1.1.2", 65535, "239.2.2.2", 1, 1000, 0},
		{"empty payload", "239.1.1.3", 5000, "239.2.2.3", 6000, 0, 0},
		{"TTL 1 sender", "239.1.1.4", 5000, "239.2.2.4", 6000, 1000, 1},
	}
	for i, tc := range cases {
		d.add(rule(fmt.Sprintf("case%d", i), inIf, tc.in, tc.inPort, out(tc.out, tc.outPort, outIf)))
	}
	d.waitReady()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(srcIf, tc.in, tc.inPort)
			s.Count, s.Size, s.TTL = 1000, tc.size, tc.ttl
			r := startRecv(t, l.sink, sinkIf, tc.out, tc.outPort, s.Count)
			send(t, l.src, s)
			checkDelivered(t, "sink", r.result(), s.Count, s.Size)
			d.checkCounted(fmt.Sprintf("case%d", i), s.Count, s.Size, dest(tc.out, tc.outPort, outIf))
		})
	}
}

// checkCountedBytes waits until rule id, with one output, has counted n
// datagrams, then checks it counted exactly n datagrams and b payload
// bytes in and out, without errors.
func (d *daemon) checkCountedBytes(id string, n, b uint64) {
	d.t.Helper()
	rr := d.waitCounted(id, n)
	o := rr.Outputs[0]
	if rr.PacketsIn != n || rr.BytesIn != b || o.PacketsOut != n || o.BytesOut != b || o.Errors != 0 {
		d.t.Errorf("rule %s counted %d datagrams and %d bytes in, %d and %d out with %d errors; want %d and %d both ways, no errors",
			id, rr.PacketsIn, rr.BytesIn, o.PacketsOut, o.BytesOut, o.Errors, n, b)
	}
}

// dialMulticast opens a UDP socket in ns that sends multicast out of
// ifname, without loopback.
func dialMulticast(t *testing.T, ns *netnstest.NS, ifname string) *ipv4.PacketConn {
	t.Helper()
	var conn net.PacketConn
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if conn, err = net.ListenPacket("udp4", "0.0.0.0:0"); err != nil {
			return err
		}
		p := ipv4.NewPacketConn(conn)
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		return p.SetMulticastLoopback(false)
	}); err != nil {
		t.Fatalf("sending socket on %s in %s: %v", ifname, ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return ipv4.NewPacketConn(conn)
}

// listenUDP opens a UDP socket in ns on port that has joined group on
// ifname. It is the only listener on port in ns, so it sees nothing else.
func listenUDP(t *testing.T, ns *netnstest.NS, ifname, group string, port int) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		conn, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.ParseIP(group), Port: port})
		if err != nil {
			return err
		}
		return conn.SetReadBuffer(8 << 20)
	}); err != nil {
		t.Fatalf("receiving socket for %s:%d on %s in %s: %v", group, port, ifname, ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// sendPaced sends payloads to dst at about 10,000 datagrams a second.
func sendPaced(t *testing.T, p *ipv4.PacketConn, dst net.Addr, payloads [][]byte) {
	t.Helper()
	for i, b := range payloads {
		if _, err := p.WriteTo(b, nil, dst); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
		if i%20 == 19 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// receiveN reads up to n datagrams from conn, for at most timeout.
func receiveN(conn *net.UDPConn, n int, timeout time.Duration) [][]byte {
	conn.SetReadDeadline(time.Now().Add(timeout))
	var got [][]byte
	buf := make([]byte, 1<<16)
	for len(got) < n {
		m, _, err := conn.ReadFromUDP(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err == nil {
			got = append(got, bytes.Clone(buf[:m]))
		}
	}
	return got
}

// sameDatagrams reports the first difference between the datagrams sent
// and those received.
func sameDatagrams(sent, got [][]byte) error {
	for i := range min(len(sent), len(got)) {
		if !bytes.Equal(sent[i], got[i]) {
			return fmt.Errorf("datagram %d: sent %d bytes, received %d bytes that differ from byte %d",
				i, len(sent[i]), len(got[i]), firstDiff(sent[i], got[i]))
		}
	}
	if len(got) != len(sent) {
		return fmt.Errorf("received %d datagrams, sent %d", len(got), len(sent))
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
