package mcrgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// RecvBatch is how many datagrams a Receiver takes from one recvmmsg(2).
const RecvBatch = 64

// RecvBufferSize is the receive buffer a Receiver asks for, with
// SO_RCVBUFFORCE when privileged (beyond net.core.rmem_max), so bursts of a
// fast stream wait in the kernel instead of being dropped.
const RecvBufferSize = 32 << 20

// RecvConfig says what a Receiver listens to. Fields marked optional have a
// zero value meaning the default written next to them.
type RecvConfig struct {
	// Interface the datagrams arrive on: the group is joined there, and the
	// socket is bound to it (SO_BINDTODEVICE), so only datagrams that
	// crossed this interface count.
	Interface string
	// Group is the destination address: a multicast group to join, or a
	// local unicast address to bind.
	Group netip.Addr
	// Port is the UDP destination port.
	Port int
	// Source, optional, joins the multicast group source-specifically:
	// datagrams from other senders are not delivered.
	Source netip.Addr
	// Count, optional, ends the run once this many datagrams have arrived
	// (default 0: no limit).
	Count uint64
	// Timeout, optional, ends the run this long after it started, whatever
	// arrived: an overall deadline, not an idle timeout (default 0: none).
	Timeout time.Duration
}

func (c *RecvConfig) check() error {
	switch {
	case c.Interface == "":
		return fmt.Errorf("an interface is required")
	case !c.Group.IsValid():
		return fmt.Errorf("a group is required")
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("port %d is out of range 1..65535", c.Port)
	case c.Source.IsValid() && !c.Group.IsMulticast():
		return fmt.Errorf("a source applies to multicast groups only, not to %s", c.Group)
	case c.Source.IsValid() && c.Source.Is4() != c.Group.Is4():
		return fmt.Errorf("source %s and group %s are of different families", c.Source, c.Group)
	}
	return nil
}

// batchReader is the receiving half of an ipv4.PacketConn or ipv6.PacketConn.
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// Receiver receives and accounts a stream sent by Sender. Run it once;
// Received may be read concurrently for progress.
type Receiver struct {
	cfg      RecvConfig
	conn     net.PacketConn
	r        batchReader
	received atomic.Uint64
}

// NewReceiver validates cfg, opens its socket and joins the group: when it
// returns, datagrams are being queued for Run.
func NewReceiver(cfg RecvConfig) (*Receiver, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	conn, r, err := openReceiver(cfg)
	if err != nil {
		return nil, err
	}
	return &Receiver{cfg: cfg, conn: conn, r: r}, nil
}

// Close leaves the group and closes the socket.
func (r *Receiver) Close() error { return r.conn.Close() }

// Received returns how many datagrams Run has received so far.
func (r *Receiver) Received() uint64 { return r.received.Load() }

// Run receives until Count datagrams arrived, Timeout passed or ctx ended,
// and returns the accounting. Ending by ctx or Timeout is normal; an error
// is a failed receive, reported with the accounting up to it.
//
// Latency is measured against the time recvmmsg returned, once per batch:
// the latency an application reading the socket sees.
func (r *Receiver) Run(ctx context.Context) (RecvResult, error) {
	if r.cfg.Timeout > 0 {
		if err := r.conn.SetReadDeadline(time.Now().Add(r.cfg.Timeout)); err != nil {
			return RecvResult{}, fmt.Errorf("set receive deadline: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { r.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	msgs := make([]ipv4.Message, RecvBatch)
	bufs := make([]byte, RecvBatch*maxDatagram)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{bufs[i*maxDatagram : (i+1)*maxDatagram]}
	}
	t := newTally()
	for {
		n, err := r.r.ReadBatch(msgs, 0)
		now := time.Now().UnixNano()
		for _, m := range msgs[:max(n, 0)] { // n is -1 with some errors
			t.add(m.Buffers[0][:m.N], now)
			t.from(m.Addr)
		}
		r.received.Store(t.received)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return t.result(), nil
		case err != nil:
			return t.result(), fmt.Errorf("receive %s:%d on %s: %w", r.cfg.Group, r.cfg.Port, r.cfg.Interface, err)
		case r.cfg.Count > 0 && t.received >= r.cfg.Count:
			return t.result(), nil
		}
	}
}
