package worker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// queueFixture is three outputs: a and b share socket e1, c has e2.
func queueFixture() (e1, e2 *egress, a, b, c *output) {
	e1 = &egress{fd: 10, head: -1, tail: -1}
	e2 = &egress{fd: 11, head: -1, tail: -1}
	return e1, e2, &output{dest: "a", eg: e1}, &output{dest: "b", eg: e1}, &output{dest: "c", eg: e2}
}

// queued describes the list of one socket as "dest/size/buf" entries.
func queued(s *sendQueue, eg *egress) []string {
	idx, sizes := s.list(eg)
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

func TestSendQueueKeepsOrderPerSocket(t *testing.T) {
	e1, e2, a, b, c := queueFixture()
	s := newSendQueue(8)
	var payload [64]byte
	for i, q := range []struct {
		o *output
		n int
	}{{a, 10}, {c, 20}, {b, 10}, {a, 30}, {c, 40}} {
		if full := s.add(q.o, i, &payload[i], q.n); full {
			t.Fatalf("add %d reported a full queue of capacity 8", i)
		}
	}
	if !slices.Equal(s.touched, []*egress{e1, e2}) {
		t.Errorf("touched %p, want socket 1 %p, then socket 2 %p", s.touched, e1, e2)
	}
	if diff := cmp.Diff([]string{"a/10/0", "b/10/2", "a/30/3"}, queued(&s, e1)); diff != "" {
		t.Errorf("socket 1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c/20/1", "c/40/4"}, queued(&s, e2)); diff != "" {
		t.Errorf("socket 2 (-want +got):\n%s", diff)
	}
	if idx, _ := s.list(e1); s.q[idx[2]].p != &payload[3] {
		t.Errorf("the third datagram of socket 1 does not point at its payload")
	}
	s.reset()
	if len(s.q) != 0 || len(s.touched) != 0 || e1.queued != 0 || e1.head != -1 || e2.tail != -1 {
		t.Errorf("after reset: %d queued, %d touched, socket 1 %+v", len(s.q), len(s.touched), e1)
	}
	s.add(c, 5, &payload[5], 50)
	if diff := cmp.Diff([]string{"c/50/5"}, queued(&s, e2)); diff != "" {
		t.Errorf("socket 2 after reset (-want +got):\n%s", diff)
	}
}

func TestSendQueueReportsFull(t *testing.T) {
	_, _, a, _, _ := queueFixture()
	s := newSendQueue(3)
	var p byte
	got := []bool{s.add(a, 0, &p, 1), s.add(a, 0, &p, 1), s.add(a, 0, &p, 1)}
	if diff := cmp.Diff([]bool{false, false, true}, got); diff != "" {
		t.Errorf("full after each add (-want +got):\n%s", diff)
	}
}

// TestSendQueueDoesNotAllocate queues and groups a batch the way the
// backends do, once the queue has seen its sockets.
func TestSendQueueDoesNotAllocate(t *testing.T) {
	_, _, a, b, c := queueFixture()
	a.eg.gso = newGSOLimits(128, 1500, false)
	s := newSendQueue(maxStaged)
	var payload [1024]byte
	batch := func() {
		for i := range 64 {
			s.add(a, i, &payload[0], 1024)
			s.add(b, i, &payload[0], 1024)
			s.add(c, i, &payload[0], 200+i%2)
		}
		runs := 0
		for _, eg := range s.touched {
			_, sizes := s.list(eg)
			for i := 0; i < len(sizes); runs++ {
				i += eg.gso.run(sizes[i:])
			}
		}
		// Socket 1: 65,507 bytes per send take 63 datagrams of 1,024.
		if runs != 3+64 {
			t.Fatalf("%d sends, want 3 for socket 1 (63+63+2) and 64 for socket 2 (GSO off)", runs)
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
	o1.eg.gso = newGSOLimits(128, 1500, false)
	o2.eg.gso = o1.eg.gso
	s := newSendQueue(maxStaged)
	var payload [1024]byte
	b.ReportAllocs()
	for b.Loop() {
		for i := range 64 {
			s.add(o1, i, &payload[0], 1024)
			s.add(o2, i, &payload[0], 1024)
		}
		for _, eg := range s.touched {
			_, sizes := s.list(eg)
			for i := 0; i < len(sizes); {
				i += eg.gso.run(sizes[i:])
			}
		}
		s.reset()
	}
}
