package mcrgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// SendBatch is how many datagrams a Sender hands to one sendmmsg(2), and so
// the largest burst its pacing releases at once.
const SendBatch = 64

// maxSleep bounds one pacing sleep so that a slow rate still notices the
// end of its context promptly.
const maxSleep = 10 * time.Millisecond

// SendConfig says what a Sender sends. Fields marked optional have a
// zero value meaning the default written next to them.
type SendConfig struct {
	// Interface the datagrams leave on: the multicast interface
	// (IP_MULTICAST_IF) for a multicast group, the bound device
	// (SO_BINDTODEVICE) for a unicast one.
	Interface string
	// Group is the destination address, multicast or unicast, IPv4 or IPv6.
	Group netip.Addr
	// Port is the UDP destination port.
	Port int
	// Source, optional, is the local address to send from (default: the
	// kernel's choice for the interface).
	Source netip.Addr
	// SourcePort, optional, is the local UDP port to send from (default 0:
	// an ephemeral port). Two runs from one port are one flow to a relay
	// that keeps flows on one worker.
	SourcePort int
	// Rate in datagrams per second, optional (default 0: as fast as the
	// socket takes them).
	Rate float64
	// Count of datagrams to send, optional (default 0: no limit).
	Count uint64
	// Duration of the run, optional (default 0: no limit). With a Rate it
	// is a count: the run sends the Duration·Rate datagrams due by then.
	Duration time.Duration
	// Size of each payload: 0 (empty datagrams, which carry nothing to
	// verify) or HeaderSize..MaxSize.
	Size int
	// TTL is the multicast TTL / hop limit, or the unicast TTL, optional
	// (default 0: the kernel's, 1 for multicast).
	TTL int
	// StreamID goes into every payload, so that a receiver tells concurrent
	// senders apart.
	StreamID uint16
	// HopCPUs, optional, are CPUs the sending thread moves between,
	// HopEvery datagrams (default DefaultHopEvery) on each in turn: a
	// stream that reaches the receiving side on several CPUs, as from a
	// sender the scheduler migrates. Linux only.
	HopCPUs  []int
	HopEvery int
}

// check reports a configuration NewSender cannot use.
func (c *SendConfig) check() error {
	switch {
	case c.Interface == "":
		return fmt.Errorf("an interface is required")
	case !c.Group.IsValid():
		return fmt.Errorf("a destination group is required")
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("port %d is out of range 1..65535", c.Port)
	case c.Source.IsValid() && c.Source.Is4() != c.Group.Is4():
		return fmt.Errorf("source %s and group %s are of different families", c.Source, c.Group)
	case c.SourcePort < 0 || c.SourcePort > 65535:
		return fmt.Errorf("source port %d is out of range 0..65535", c.SourcePort)
	case c.Rate < 0:
		return fmt.Errorf("rate %g is negative", c.Rate)
	case c.Size != 0 && (c.Size < HeaderSize || c.Size > MaxSize):
		return fmt.Errorf("size %d is out of range: 0 or %d..%d", c.Size, HeaderSize, MaxSize)
	case c.TTL < 0 || c.TTL > 255:
		return fmt.Errorf("ttl %d is out of range 0..255", c.TTL)
	case c.HopEvery < 0:
		return fmt.Errorf("hop-every %d is negative", c.HopEvery)
	}
	for _, cpu := range c.HopCPUs {
		if cpu < 0 {
			return fmt.Errorf("hop CPU %d is negative", cpu)
		}
	}
	return nil
}

// SendResult is what `mcrgen send` prints as its JSON line.
type SendResult struct {
	Sent uint64 `json:"sent"`
	// PPS is Sent divided by the time from the start to the last send.
	PPS float64 `json:"pps"`
	// Bytes is Sent times the payload size.
	Bytes uint64 `json:"bytes"`
	// SourcePort is the UDP port the datagrams left from.
	SourcePort int           `json:"source_port,omitempty"`
	Elapsed    time.Duration `json:"-"`
}

// batchWriter is the sending half of an ipv4.PacketConn or ipv6.PacketConn
// (ipv4.Message and ipv6.Message are the same type).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Sender sends a paced stream of verifiable payloads (see FillPayload) to
// one destination. Run it once; Sent may be read concurrently for progress.
type Sender struct {
	cfg  SendConfig
	conn io.Closer
	w    batchWriter
	dst  net.Addr
	sent atomic.Uint64

	// now reads a monotonic clock, sleep pauses pacing; tests replace both.
	now   func() time.Duration
	sleep func(time.Duration)
}

// NewSender validates cfg and opens its socket. Close it when done.
func NewSender(cfg SendConfig) (*Sender, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	conn, w, dst, err := openSender(cfg)
	if err != nil {
		return nil, err
	}
	return &Sender{cfg: cfg, conn: conn, w: w, dst: dst, now: monotonic()}, nil
}

// Close closes the socket.
func (s *Sender) Close() error { return s.conn.Close() }

// Sent returns how many datagrams Run has sent so far.
func (s *Sender) Sent() uint64 { return s.sent.Load() }

// Run sends until Count datagrams are sent, Duration has passed or ctx
// ends, whichever comes first, and returns what it sent. The end of ctx is
// a normal way to stop; an error is a failed send, reported with what was
// sent before it.
//
// Pacing (see pacer) releases at most SendBatch datagrams per sendmmsg and
// sleeps in between. On Linux the sleeps are nanosleep(2) with a 1 ns timer
// slack on the calling goroutine's locked thread: Go timers wake up about
// 1 ms late, which would turn 500 kpps into bursts of 500 datagrams.
func (s *Sender) Run(ctx context.Context) (SendResult, error) {
	sleep := s.sleep
	if sleep == nil {
		var release func()
		sleep, release = preciseSleep()
		defer release()
	}
	var hop *hopper
	if len(s.cfg.HopCPUs) > 0 {
		runtime.LockOSThread() // affinity is per thread
		defer runtime.UnlockOSThread()
		restore, err := threadAffinity()
		if err != nil {
			return SendResult{}, fmt.Errorf("read the sender's CPUs: %w", err)
		}
		defer restore()
		hop = newHopper(s.cfg.HopCPUs, s.cfg.HopEvery)
	}
	msgs := make([]ipv4.Message, SendBatch)
	bufs := make([]byte, SendBatch*s.cfg.Size)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{bufs[i*s.cfg.Size : (i+1)*s.cfg.Size]}
		msgs[i].Addr = s.dst
	}
	limit := s.limit()
	p := pacer{rate: s.cfg.Rate, maxBatch: SendBatch}
	var sent uint64
	start := s.now()
	for ctx.Err() == nil {
		if limit > 0 && sent >= limit {
			break
		}
		elapsed := s.now() - start
		if s.cfg.Rate == 0 && s.cfg.Duration > 0 && elapsed >= s.cfg.Duration {
			break
		}
		n := p.due(elapsed)
		if n == 0 {
			sleep(min(max(p.wait(elapsed), time.Microsecond), maxSleep))
			continue
		}
		if limit > 0 {
			n = int(min(uint64(n), limit-sent))
		}
		if hop != nil {
			n = hop.batch(sent, n)
			if err := hop.place(sent); err != nil {
				return s.result(sent, s.now()-start), err
			}
		}
		if err := s.send(msgs[:n], sent); err != nil {
			return s.result(sent, s.now()-start), err
		}
		p.done(n)
		sent += uint64(n)
		s.sent.Store(sent)
	}
	return s.result(sent, s.now()-start), nil
}

// limit returns how many datagrams the run sends, 0 for no limit. A paced
// run with a Duration sends exactly what its schedule has due by then, so
// `--rate 1000 --duration 10s` sends 10,000 datagrams however late the last
// wake-up is.
func (s *Sender) limit() uint64 {
	if s.cfg.Rate == 0 || s.cfg.Duration == 0 {
		return s.cfg.Count
	}
	byTime := uint64(s.cfg.Duration.Seconds() * s.cfg.Rate)
	if s.cfg.Count == 0 {
		return byTime
	}
	return min(s.cfg.Count, byTime)
}

// send fills msgs with the datagrams numbered from seq and sends them all.
func (s *Sender) send(msgs []ipv4.Message, seq uint64) error {
	if s.cfg.Size > 0 {
		stamp := time.Now().UnixNano()
		for i := range msgs {
			FillPayload(msgs[i].Buffers[0], Header{Stream: s.cfg.StreamID, Seq: seq + uint64(i), SentUnixNano: stamp})
		}
	}
	for len(msgs) > 0 {
		n, err := s.w.WriteBatch(msgs, 0)
		if err != nil {
			return fmt.Errorf("send to %s: %w", s.dst, err)
		}
		msgs = msgs[n:]
	}
	return nil
}

func (s *Sender) result(sent uint64, elapsed time.Duration) SendResult {
	r := SendResult{Sent: sent, Bytes: sent * uint64(s.cfg.Size), Elapsed: elapsed}
	if pc, ok := s.conn.(net.PacketConn); ok {
		if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
			r.SourcePort = a.Port
		}
	}
	if elapsed > 0 {
		r.PPS = round1(float64(sent) / elapsed.Seconds())
	}
	return r
}

// monotonic returns a clock reading the time since its creation from the
// monotonic clock, immune to wall-clock steps.
func monotonic() func() time.Duration {
	epoch := time.Now()
	return func() time.Duration { return time.Since(epoch) }
}
