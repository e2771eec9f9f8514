package pool

import (
	"log/slog"
	"sync"
	"time"

	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/stats"
)

// heldCloseAfter bounds how long the ingress sockets of an input no rule
// uses any more are kept while some worker may still hold them (it has not
// applied the change yet): past it they are closed anyway.
const heldCloseAfter = 30 * time.Second

// inputKey names an input's fanout group: its interface and group id, as
// the rules give them to the workers.
type inputKey struct{ ifindex, fanoutID int }

// heldInputs keeps the ingress sockets of every input the rules use, one
// relaysock.IngressGroup per input with a member per worker slot, for as
// long as rules use the input rather than for a worker's life:
//
//   - The members join the fanout group in slot order and stay, so the
//     member the kernel picks for a packet is the same slot's across worker
//     restarts: a flow's packets keep going to one slot (hash mode), a CPU's
//     to the worker pinned there (cpu mode).
//   - Each worker gets a duplicate of its slot's member. When it dies or
//     hangs, what the kernel queued for the slot waits in the member's
//     receive queue or ring for the next worker of the slot, and the
//     kernel's drop counter keeps counting; the supervisor reads it when a
//     worker dies (takeDrops), so losses show in kernel_drops even while
//     the slot waits out a backoff.
//
// Its methods are safe for concurrent use: the socket brokers of all slots
// call dup, the slot runners takeDrops, the health loop sweep.
type heldInputs struct {
	mode  relaysock.Fanout
	cores []int // by slot
	log   *slog.Logger
	agg   *stats.Aggregator // may be nil

	// mu guards groups. Lock order: mu before Pool.mu (sweep).
	mu     sync.Mutex
	groups map[inputKey]*heldGroup
}

// heldGroup is one input's group and, once no rule uses the input, since
// when.
type heldGroup struct {
	g      *relaysock.IngressGroup
	unused time.Time // zero while a rule uses the input
}

func newHeldInputs(mode relaysock.Fanout, cores []int, log *slog.Logger, agg *stats.Aggregator) *heldInputs {
	return &heldInputs{mode: mode, cores: cores, log: log, agg: agg, groups: make(map[inputKey]*heldGroup)}
}

// dup returns slot's socket of the input req asks for, with req's filter,
// opening the input's group on first use with req's filter and ring for
// every slot (the workers of all slots share the ruleset and the ring
// geometry). A request without a ring for a group that has one, or the
// other way round, gets the group's sockets as they are: the worker looks
// at the socket to find out (and a worker that asks without a ring does
// so only after asking with one failed).
func (h *heldInputs) dup(slot int, req *relaysock.Ingress) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := inputKey{req.IfIndex, req.FanoutID}
	hg := h.groups[k]
	if hg == nil {
		g, err := relaysock.OpenIngressGroup(req.IfIndex, req.FanoutID, h.mode, h.cores, req.Filter, req.Ring)
		if err != nil {
			return -1, err
		}
		hg = &heldGroup{g: g}
		h.groups[k] = hg
		h.log.Info("input sockets open", "ifindex", req.IfIndex, "fanout_id", req.FanoutID, "fanout", h.mode.String(),
			"workers", len(h.cores), "ring", g.Ring())
	}
	return hg.g.Dup(slot, req.Filter)
}

// takeDrops reads what the kernel dropped on slot's sockets since their
// last read and counts it for the slot. The slot's worker is gone: it will
// never report these.
func (h *heldInputs) takeDrops(slot int, log *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, hg := range h.groups {
		h.countDrops(k, hg.g, slot, log, "input dropped packets for a worker that died or hung")
	}
}

// countDrops counts the drops of slot's member of g, logging them as msg.
// h.mu must be held.
func (h *heldInputs) countDrops(k inputKey, g *relaysock.IngressGroup, slot int, log *slog.Logger, msg string) {
	n, err := g.Drops(slot)
	if err != nil {
		log.Warn("cannot read an input's drop counter", "ifindex", k.ifindex, "err", err)
		return
	}
	if n == 0 {
		return
	}
	log.Warn(msg, "ifindex", k.ifindex, "dropped", n)
	if h.agg != nil {
		h.agg.AddKernelDrops(slot, n)
	}
}

// sweep closes the groups of inputs no rule has used since settled
// reported true, or for heldCloseAfter: their sockets would otherwise keep
// queueing (and dropping) packets for no one. used reports whether a rule
// uses an input; settled whether every worker holds the current ruleset,
// so none still holds a socket of an input it dropped (the kernel keeps a
// group until its last member closes, and a group reopened meanwhile under
// the same id would get members from two lives). Both are asked under
// h.mu, so no worker is handed a socket of a group being closed.
func (h *heldInputs) sweep(now time.Time, used func(inputKey) bool, settled func() bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var idle bool
	for k, hg := range h.groups {
		switch {
		case used(k):
			hg.unused = time.Time{}
		case hg.unused.IsZero():
			hg.unused = now
			idle = true
		default:
			idle = true
		}
	}
	if !idle {
		return
	}
	done := settled()
	for k, hg := range h.groups {
		if hg.unused.IsZero() || !done && now.Sub(hg.unused) < heldCloseAfter {
			continue
		}
		h.close(k, hg)
	}
}

// closeAll closes every group; the pool has stopped.
func (h *heldInputs) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, hg := range h.groups {
		h.close(k, hg)
	}
}

// close counts the last drops of k's group and closes it. h.mu must be
// held.
func (h *heldInputs) close(k inputKey, hg *heldGroup) {
	for slot := range h.cores {
		h.countDrops(k, hg.g, slot, h.log.With("worker", slot), "input dropped packets before its sockets closed")
	}
	hg.g.Close()
	delete(h.groups, k)
	h.log.Info("input sockets closed", "ifindex", k.ifindex, "fanout_id", k.fanoutID)
}
