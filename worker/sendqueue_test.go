package worker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// queueFixture is three outputs: a and b share dest d1, c has d2, on
// another socket.
func queueFixture() (d1, d2 *dest, a, b, c *output) {
	d1 = &dest{eg: &egress{fd: 10}, head: -1, tail: -1}
	d2 = &dest{eg: &egress{fd: 11}, head: -1, tail: -1}
	return d1, d2, &output{dest: "a", d: d1}, &output{dest: "b", d: d1}, &output{dest: "c", d: d2}
}

// queued describes the list of one dest as "dest/size/buf" entries.
func queued(s *sendQueue, d *dest) []string {
	idx, sizes := s.list(d)
	var out []string
	for k, i := range idx {
		p := s.q[i]
		if p.n != sizes[k] {
			out = append(out, "size mismatch")
		}
		out = append(out, fmt.Sprintf("%s/%d/%d", p.o.dest, p.n, p.buf))
	}
	return out
}

func TestSendQueueKeepsOrderPerDest(t *testing.T) {
	d1, d2, a, b, c := queueFixture()
	s := newSendQueue(8)
	var payload [64]byte
	for i, q := range []struct {
		o *output
		n int
	}{{a, 10}, {c, 20}, {b, 10}, {a, 30}, {c, 40}} {
		if full := s.add(q.o, i, &payload[i], q.n, nil); full {
			t.Fatalf("add %d reported a full queue of capacity 8", i)
		}
	}
	if !slices.Equal(s.touched, []*dest{d1, d2}) {
		t.Errorf("touched %p, want dest 1 %p, then dest 2 %p", s.touched, d1, d2)
	}
	if diff := cmp.Diff([]string{"a/10/0", "b/10/2", "a/30/3"}, queued(&s, d1)); diff != "" {
		t.Errorf("dest 1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c/20/1", "c/40/4"}, queued(&s, d2)); diff != "" {
		t.Errorf("dest 2 (-want +got):\n%s", diff)
	}
	if idx, _ := s.list(d1); s.q[idx[2]].p != &payload[3] {
		t.Errorf("the third datagram of dest 1 does not point at its payload")
	}
	s.reset()
	if len(s.q) != 0 || len(s.touched) != 0 || d1.queued != 0 || d1.head != -1 || d2.tail != -1 {
		t.Errorf("after reset: %d queued, %d touched, dest 1 %+v", len(s.q), len(s.touched), d1)
	}
	s.add(c, 5, &payload[5], 50, nil)
	if diff := cmp.Diff([]string{"c/50/5"}, queued(&s, d2)); diff != "" {
		t.Errorf("dest 2 after reset (-want +got):\n%s", diff)
	}
}

func TestSendQueueReportsFull(t *testing.T) {
	_, _, a, _, _ := queueFixture()
	s := newSendQueue(3)
	var p byte
	got := []bool{s.add(a, 0, &p, 1, nil), s.add(a, 0, &p, 1, nil), s.add(a, 0, &p, 1, nil)}
	if diff := cmp.Diff([]bool{false, false, true}, got); diff != "" {
		t.Errorf("full after each add (-want +got):\n%s", diff)
	}
}

// TestSendQueueDoesNotAllocate queues and groups a batch the way the
// backends do, once the queue has seen its sockets.
func TestSendQueueDoesNotAllocate(t *testing.T) {
	_, _, a, b, c := queueFixture()
	a.d.eg.gso = newGSOLimits(128, 1500, false)
	s := newSendQueue(maxStaged)
	var payload [1024]byte
	hdr := make([]byte, 28)
	batch := func() {
		for i := range 64 {
			s.add(a, i, &payload[0], 1024, nil)
			s.add(b, i, &payload[0], 1024, nil)
			s.add(c, i, &payload[0], 200+i%2, hdr)
		}
		runs := 0
		for _, d := range s.touched {
			_, sizes := s.list(d)
			for i := 0; i < len(sizes); runs++ {
				i += d.eg.gso.run(sizes[i:])
			}
		}
		// Socket 1: 65,507 bytes per send take 63 datagrams of 1,024.
		if runs != 3+64 {
			t.Fatalf("%d sends, want 3 for dest 1 (63+63+2) and 64 for dest 2 (GSO off)", runs)
		}
		s.reset()
	}
	batch()
	if allocs := testing.AllocsPerRun(100, batch); allocs != 0 {
		t.Fatalf("a batch allocates %v times, want 0", allocs)
	}
}

// BenchmarkSendQueue measures queueing and grouping one datagram of a
// batch of 64 for each of two sockets.
func BenchmarkSendQueue(b *testing.B) {
	_, _, o1, _, o2 := queueFixture()
	o1.d.eg.gso = newGSOLimits(128, 1500, false)
	o2.d.eg.gso = o1.d.eg.gso
	s := newSendQueue(maxStaged)
	var payload [1024]byte
	b.ReportAllocs()
	for b.Loop() {
		for i := range 64 {
			s.add(o1, i, &payload[0], 1024, nil)
			s.add(o2, i, &payload[0], 1024, nil)
		}
		for _, d := range s.touched {
			_, sizes := s.list(d)
			for i := 0; i < len(sizes); {
				i += d.eg.gso.run(sizes[i:])
			}
		}
		s.reset()
	}
}
