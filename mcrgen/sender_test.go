package mcrgen

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

func TestPacer(t *testing.T) {
	p := pacer{rate: 1000, maxBatch: 64}
	steps := []struct {
		now      time.Duration
		due      int
		wait     time.Duration
		thenSend int
	}{
		{now: 0, due: 0, wait: time.Millisecond},
		{now: 999 * time.Microsecond, due: 0, wait: time.Microsecond},
		{now: time.Millisecond, due: 1, wait: 0, thenSend: 1},
		{now: 1500 * time.Microsecond, due: 0, wait: 500 * time.Microsecond},
		{now: 10 * time.Millisecond, due: 9, thenSend: 9},             // a late wake-up catches up
		{now: 200 * time.Millisecond, due: 64, thenSend: 64},          // at most one batch at a time
		{now: 200 * time.Millisecond, due: 64, thenSend: 64},          //
		{now: 200 * time.Millisecond, due: 62, thenSend: 62},          // 200 due in all
		{now: 200 * time.Millisecond, due: 0, wait: time.Millisecond}, //
	}
	for i, s := range steps {
		if got := p.due(s.now); got != s.due {
			t.Errorf("step %d: due(%v) = %d, want %d", i, s.now, got, s.due)
		}
		if got := p.wait(s.now); got != s.wait {
			t.Errorf("step %d: wait(%v) = %v, want %v", i, s.now, got, s.wait)
		}
		p.done(s.thenSend)
	}
	unpaced := pacer{maxBatch: 64}
	if unpaced.due(0) != 64 || unpaced.wait(0) != 0 {
		t.Errorf("rate 0: due %d, wait %v; want a full batch at once", unpaced.due(0), unpaced.wait(0))
	}
}

// fakeLink is a Sender's clock, sleep and socket in one: sleeps overshoot
// like real timers do, and each sendmmsg takes time per datagram.
type fakeLink struct {
	t       *testing.T
	now     time.Duration
	rng     *rand.Rand
	rate    float64
	sent    uint64
	maxSeen int
}

func (f *fakeLink) clock() time.Duration { return f.now }

// sleep oversleeps by 50 µs to 1.2 ms, the range of nanosleep on a busy VM
// and of Go timers.
func (f *fakeLink) sleep(d time.Duration) {
	f.now += d + 50*time.Microsecond + time.Duration(f.rng.Int64N(int64(1150*time.Microsecond)))
}

func (f *fakeLink) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	f.t.Helper()
	f.maxSeen = max(f.maxSeen, len(ms))
	// Never ahead of schedule: everything sent so far was due.
	if due := uint64(f.now.Seconds() * f.rate); f.sent+uint64(len(ms)) > due {
		f.t.Fatalf("at %v: %d datagrams sent, only %d due", f.now, f.sent+uint64(len(ms)), due)
	}
	for _, m := range ms {
		h, err := ParsePayload(m.Buffers[0])
		if err != nil || h.Seq != f.sent || h.Stream != 9 {
			f.t.Fatalf("datagram %d: header %+v, error %v", f.sent, h, err)
		}
		f.sent++
	}
	f.now += time.Duration(len(ms)) * 300 * time.Nanosecond
	return len(ms), nil
}

// TestSendPacing runs Sender.Run on a fake clock whose sleeps wake up late
// by up to 1.2 ms: the achieved rate must stay within 2 % (the accuracy
// docs/cli.md promises at 1k–500k pps), never run ahead of schedule, and
// burst at most one batch.
func TestSendPacing(t *testing.T) {
	for _, rate := range []float64{1_000, 50_000, 200_000, 500_000} {
		f := &fakeLink{t: t, rng: rand.New(rand.NewPCG(uint64(rate), 1)), rate: rate}
		count := uint64(rate * 2) // two seconds
		s := &Sender{
			cfg: SendConfig{Rate: rate, Count: count, Size: 64, StreamID: 9},
			w:   f, dst: &net.UDPAddr{}, now: f.clock, sleep: f.sleep,
		}
		res, err := s.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != count || f.sent != count || res.Bytes != count*64 {
			t.Errorf("rate %g: result %+v, link saw %d; want %d sent", rate, res, f.sent, count)
		}
		deviation := math.Abs(res.PPS-rate) / rate
		t.Logf("rate %g: achieved %.1f pps (%.3f %%), bursts up to %d", rate, res.PPS, deviation*100, f.maxSeen)
		if deviation > 0.02 {
			t.Errorf("rate %g: achieved %.1f pps, more than 2 %% off", rate, res.PPS)
		}
		if f.maxSeen > SendBatch {
			t.Errorf("rate %g: a batch of %d, more than %d", rate, f.maxSeen, SendBatch)
		}
	}
}

func TestSendStopsAtDurationAndContext(t *testing.T) {
	f := &fakeLink{t: t, rng: rand.New(rand.NewPCG(1, 1)), rate: 1000}
	s := &Sender{cfg: SendConfig{Rate: 1000, Duration: 500 * time.Millisecond, Size: 64, StreamID: 9},
		w: f, dst: &net.UDPAddr{}, now: f.clock, sleep: f.sleep}
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 500 {
		t.Errorf("500 ms at 1000 pps sent %d, want 500", res.Sent)
	}

	ctx, cancel := context.WithCancel(context.Background())
	f = &fakeLink{t: t, rng: rand.New(rand.NewPCG(1, 1)), rate: 1000}
	s = &Sender{cfg: SendConfig{Rate: 1000, Size: 64, StreamID: 9}, w: f, dst: &net.UDPAddr{}, now: f.clock,
		sleep: func(d time.Duration) {
			f.sleep(d)
			if f.now > time.Second {
				cancel()
			}
		}}
	res, err = s.Run(ctx)
	if err != nil || res.Sent < 999 || res.Sent > 1002 {
		t.Errorf("cancelled after 1 s at 1000 pps: sent %d, error %v; want about 1000 and no error", res.Sent, err)
	}
}
