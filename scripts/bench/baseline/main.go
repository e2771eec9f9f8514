// Command baseline is the "batched Go relay" that scripts/bench/run.sh
// measures mcr against: the relay a Go programmer would write in an afternoon
// with golang.org/x/net/ipv4, and the bar mcr has to clear by a wide margin.
//
// It joins one IPv4 multicast group on one interface with a plain UDP socket,
// reads datagrams in batches (recvmmsg through ReadBatch) and writes each
// batch to every output group (sendmmsg through WriteBatch) on a UDP socket
// per output, connected to the output group and bound to the output
// interface. Payloads are forwarded untouched; only the group, port and
// interface change.
//
//	baseline --input-interface r0 --input-group 239.1.1.1 --input-port 5001 \
//	    --outputs 239.2.2.2:6000:r1[,239.2.2.2:6000:r2...] [--batch 64] [--ttl 8]
//
// It runs until SIGINT or SIGTERM and then prints its counters as one JSON
// line on stdout. It is a benchmark reference, not part of mcr.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/ipv4"
)

// maxDatagram is the receive buffer size per message: the largest UDP payload
// over IPv4, so no datagram is ever truncated.
const maxDatagram = 65507

// output is one destination: a UDP socket connected to the output group.
type output struct {
	name string
	conn *net.UDPConn
	pc   *ipv4.PacketConn
}

// counters is what the relay prints when it stops.
type counters struct {
	Received   uint64 `json:"received"`
	Batches    uint64 `json:"batches"`
	Sent       uint64 `json:"sent"`
	SendErrors uint64 `json:"send_errors"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run() error {
	inIf := flag.String("input-interface", "", "interface to join the input group on")
	inGroup := flag.String("input-group", "", "IPv4 multicast group to receive")
	inPort := flag.Int("input-port", 0, "UDP port to receive on")
	outputs := flag.String("outputs", "", "comma-separated GROUP:PORT:INTERFACE destinations")
	batch := flag.Int("batch", 64, "datagrams per recvmmsg/sendmmsg")
	ttl := flag.Int("ttl", 8, "multicast TTL of relayed datagrams")
	rcvbuf := flag.Int("rcvbuf", 4<<20, "input socket receive buffer in bytes (capped by net.core.rmem_max)")
	flag.Parse()
	if *inIf == "" || *inGroup == "" || *inPort == 0 || *outputs == "" || *batch < 1 {
		flag.Usage()
		return errors.New("--input-interface, --input-group, --input-port and --outputs are required")
	}

	in, err := openInput(*inIf, *inGroup, *inPort, *rcvbuf)
	if err != nil {
		return err
	}
	outs, err := openOutputs(*outputs, *ttl)
	if err != nil {
		return err
	}

	// Closing the input socket is how a signal stops the relay loop.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		in.Close()
	}()

	var c counters
	relay(ipv4.NewPacketConn(in), outs, *batch, &c)
	return json.NewEncoder(os.Stdout).Encode(c)
}

// openInput binds a UDP socket to the input group and port, so only that
// group's datagrams reach it, and joins the group on the input interface.
func openInput(ifName, group string, port, rcvbuf int) (*net.UDPConn, error) {
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return nil, fmt.Errorf("look up input interface %s: %w", ifName, err)
	}
	gip := net.ParseIP(group).To4()
	if gip == nil || !gip.IsMulticast() {
		return nil, fmt.Errorf("input group %q is not an IPv4 multicast address", group)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: gip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("bind input %s:%d: %w", group, port, err)
	}
	if err := conn.SetReadBuffer(rcvbuf); err != nil {
		conn.Close()
		return nil, fmt.Errorf("set input receive buffer: %w", err)
	}
	if err := ipv4.NewPacketConn(conn).JoinGroup(ifi, &net.UDPAddr{IP: gip}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("join %s on %s: %w", group, ifName, err)
	}
	return conn, nil
}

// openOutputs opens one connected UDP socket per GROUP:PORT:INTERFACE entry,
// sending from the interface's first IPv4 address with multicast loopback off.
func openOutputs(spec string, ttl int) ([]output, error) {
	var outs []output
	for _, entry := range strings.Split(spec, ",") {
		o, err := openOutput(entry, ttl)
		if err != nil {
			for _, prev := range outs {
				prev.conn.Close()
			}
			return nil, err
		}
		outs = append(outs, o)
	}
	return outs, nil
}

func openOutput(entry string, ttl int) (output, error) {
	parts := strings.Split(entry, ":")
	if len(parts) != 3 {
		return output{}, fmt.Errorf("output %q: want GROUP:PORT:INTERFACE", entry)
	}
	group, ifName := net.ParseIP(parts[0]).To4(), parts[2]
	port, err := strconv.Atoi(parts[1])
	if group == nil || err != nil || port < 1 || port > 65535 {
		return output{}, fmt.Errorf("output %q: want an IPv4 group and a port 1-65535", entry)
	}
	ifi, err := net.InterfaceByName(ifName)
	if err != nil {
		return output{}, fmt.Errorf("look up output interface %s: %w", ifName, err)
	}
	src, err := firstIPv4(ifi)
	if err != nil {
		return output{}, err
	}
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: src}, &net.UDPAddr{IP: group, Port: port})
	if err != nil {
		return output{}, fmt.Errorf("connect output %s: %w", entry, err)
	}
	pc := ipv4.NewPacketConn(conn)
	for _, set := range []func() error{
		func() error { return pc.SetMulticastInterface(ifi) },
		func() error { return pc.SetMulticastTTL(ttl) },
		func() error { return pc.SetMulticastLoopback(false) },
	} {
		if err := set(); err != nil {
			conn.Close()
			return output{}, fmt.Errorf("configure output %s: %w", entry, err)
		}
	}
	return output{name: entry, conn: conn, pc: pc}, nil
}

func firstIPv4(ifi *net.Interface) (net.IP, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address", ifi.Name)
}

// relay moves batches from in to every output until in is closed. The
// message slices are allocated once: rx owns the receive buffers, tx only
// points at the received bytes of the current batch, so nothing is copied or
// allocated per datagram.
func relay(in *ipv4.PacketConn, outs []output, batch int, c *counters) {
	rx := make([]ipv4.Message, batch)
	tx := make([]ipv4.Message, batch)
	for i := range rx {
		rx[i].Buffers = [][]byte{make([]byte, maxDatagram)}
		tx[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := in.ReadBatch(rx, 0)
		if err != nil {
			return // closed by the signal handler
		}
		c.Received += uint64(n)
		c.Batches++
		for i := 0; i < n; i++ {
			tx[i].Buffers[0] = rx[i].Buffers[0][:rx[i].N]
		}
		for _, o := range outs {
			writeAll(o.pc, tx[:n], c)
		}
	}
}

// writeAll sends the whole batch, resuming after partial sendmmsg results.
// sendmmsg(2) reports an error only when the first datagram of the call
// fails; that datagram (ENOBUFS and the like) is counted and skipped: a relay
// drops, it does not stall.
func writeAll(pc *ipv4.PacketConn, msgs []ipv4.Message, c *counters) {
	for len(msgs) > 0 {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil || n == 0 {
			c.SendErrors++
			n = 1
		} else {
			c.Sent += uint64(n)
		}
		msgs = msgs[n:]
	}
}
