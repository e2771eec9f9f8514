package pool

import (
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
)

// egressLinger is how long an egress socket stays open after its last
// output went: a rule removed and added again, or replaced by a reload in
// two steps, keeps its source port, and a worker that has not yet dropped
// its copy of the socket cannot make the port look taken.
const egressLinger = 5 * time.Second

// errNotHeld refuses a worker an egress socket no output needs; the worker
// sees its EPERM through the broker.
var errNotHeld = fmt.Errorf("no output needs it: %w", syscall.EPERM)

// EgressOps are the kernel steps of the egress sockets a Pool holds
// (Config.Egress); tests of what drives a pool fake them.
type EgressOps struct {
	Open  func(relaysock.EgressKey) (int, error) // relaysock.OpenEgress
	Port  func(fd int) int                       // the source port fd is bound to; 0 for raw sockets
	Dup   func(fd int) (int, error)
	Close func(fd int)
}

// heldEgress holds the egress sockets of the ruleset's outputs, one per
// egress identity (relaysock.EgressKey), and is the policy for them: a
// worker gets a dup of a socket some output needs, and nothing else. Each
// socket is opened once, when the first output needs it, so every worker
// sends an output's datagrams from one source address and port, and so do
// its successors after a restart; without a source port the kernel picks
// the port then, and it stays the identity's while the supervisor holds the
// socket. A socket whose last output goes stays open for egressLinger. One
// that cannot be opened (a source address the host lacks, a port another
// program holds) is tried again whenever a worker asks for it: workers ask
// again for failed sockets every few seconds. Its methods are safe for
// concurrent use.
type heldEgress struct {
	log    *slog.Logger
	ops    EgressOps
	linger time.Duration
	// after runs f after d on a goroutine of its own (time.AfterFunc);
	// tests fire it by hand.
	after func(d time.Duration, f func()) stopper

	mu     sync.Mutex
	byKey  map[relaysock.EgressKey]*egressSocket
	closed bool
}

// egressSocket is one held socket. Its fields are guarded by heldEgress.mu.
type egressSocket struct {
	fd      int   // -1 while it cannot be opened
	err     error // why fd is -1
	outputs int   // outputs of the ruleset that send on it
	// idle closes the socket once it has had no output for the linger;
	// nil while it has outputs.
	idle stopper
}

// stopper is a timer that may be stopped before it fires.
type stopper interface{ Stop() bool }

func newHeldEgress(log *slog.Logger, ops EgressOps) *heldEgress {
	return &heldEgress{log: log, ops: ops, linger: egressLinger, byKey: map[relaysock.EgressKey]*egressSocket{},
		after: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }}
}

// add counts the outputs of wr in, opening the sockets none had needed.
func (h *heldEgress) add(wr controlproto.WorkerRule) { h.count(wr, 1) }

// remove counts the outputs of wr out.
func (h *heldEgress) remove(wr controlproto.WorkerRule) { h.count(wr, -1) }

func (h *heldEgress) count(wr controlproto.WorkerRule, d int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for i := range wr.Outputs {
		k, err := relaysock.EgressKeyFor(wr, i)
		if err != nil {
			continue // the worker reports the output's error
		}
		if d > 0 {
			h.acquire(k)
		} else {
			h.release(k)
		}
	}
}

func (h *heldEgress) acquire(k relaysock.EgressKey) {
	s := h.byKey[k]
	if s == nil {
		s = &egressSocket{fd: -1}
		h.byKey[k] = s
		h.openLocked(k, s)
	}
	s.outputs++
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
}

func (h *heldEgress) release(k relaysock.EgressKey) {
	s := h.byKey[k]
	if s == nil || s.outputs == 0 {
		return
	}
	if s.outputs--; s.outputs > 0 {
		return
	}
	s.idle = h.after(h.linger, func() { h.expire(k, s) })
}

// expire closes s, the socket of k, if it still has no output.
func (h *heldEgress) expire(k relaysock.EgressKey, s *egressSocket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byKey[k] != s || s.outputs > 0 {
		return
	}
	delete(h.byKey, k)
	if s.fd >= 0 {
		h.ops.Close(s.fd)
		h.log.Info("egress socket closed", "socket", k.String())
	}
}

// openLocked opens the socket of k, logging a change of its error.
func (h *heldEgress) openLocked(k relaysock.EgressKey, s *egressSocket) {
	fd, err := h.ops.Open(k)
	if err != nil {
		if s.err == nil || s.err.Error() != err.Error() {
			h.log.Warn("cannot open egress socket", "socket", k.String(), "err", err)
		}
		s.err = err
		return
	}
	s.fd, s.err = fd, nil
	attrs := []any{"socket", k.String()}
	if p := h.ops.Port(fd); p != 0 && !k.Raw { // a raw socket's "port" is its protocol
		attrs = append(attrs, "source_port", p)
	}
	h.log.Info("egress socket open", attrs...)
}

// dup returns a copy of the socket of k for a worker: refused unless an
// output needs it; a socket that could not be opened is tried again.
func (h *heldEgress) dup(k relaysock.EgressKey) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.byKey[k]
	if h.closed || s == nil || s.outputs == 0 {
		return -1, fmt.Errorf("refused: the %v: %w", k, errNotHeld)
	}
	if s.fd < 0 {
		h.openLocked(k, s)
		if s.fd < 0 {
			return -1, s.err
		}
	}
	fd, err := h.ops.Dup(s.fd)
	if err != nil {
		return -1, fmt.Errorf("dup the %v: %w", k, err)
	}
	return fd, nil
}

// close closes every socket (the pool stopped); nothing opens afterwards.
func (h *heldEgress) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for k, s := range h.byKey {
		if s.idle != nil {
			s.idle.Stop()
		}
		if s.fd >= 0 {
			h.ops.Close(s.fd)
		}
		delete(h.byKey, k)
	}
}
