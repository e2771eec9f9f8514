package pool

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// refusedLogEvery is the least time between two logs of refused socket
// requests of one worker, so that a misbehaving worker cannot flood the
// supervisor's log; the log says how many it did not show.
const refusedLogEvery = time.Second

// serveSockets opens the sockets worker w asks for on its socket
// socketpair and hands them over, as long as a rule of the pool's ruleset
// needs them, until w closes its end or its life is torn down. The worker
// runs without the privileges to open them itself (docs/security.md).
//
// A stream that fails on the supervisor's side while the worker lives (a
// request that does not decode, a frame over the size limit) cannot be
// trusted to be in frame any more, and the worker would wait for replies
// that never come: the worker is killed, and restarted like any other that
// dies.
//
// Egress sockets are the pool's (heldEgress): every worker gets a dup of
// the same one, so an output leaves from one source address and port.
// Input sockets are too, one per slot (heldInputs): each worker gets a dup
// of its slot's member of the input's fanout group.
func (p *Pool) serveSockets(w *workerProc) {
	var lastLog time.Time
	var unlogged int
	refused := func(err error) {
		if now := time.Now(); now.Sub(lastLog) >= refusedLogEvery {
			w.log.Warn("socket request refused", "err", err, "refused_unlogged", unlogged)
			lastLog, unlogged = now, 0
		} else {
			unlogged++
		}
	}
	open := func(req relaysock.Request) (int, error) {
		if req.Egress != nil && req.Ingress == nil {
			fd, err := p.egress.dup(*req.Egress)
			if errors.Is(err, errNotHeld) {
				refused(err)
			}
			return fd, err
		}
		p.mu.Lock()
		err := p.grants.Allow(req)
		p.mu.Unlock()
		if err != nil {
			refused(err)
			return -1, err
		}
		if req.Ingress != nil && req.Egress == nil {
			return p.inputs.dup(w.slot, req.Ingress)
		}
		return relaysock.Open(req)
	}
	answered := func(req relaysock.Request, err error) {
		switch {
		case req.Resync != "":
			w.log.Warn("worker resynchronises its socket stream", "seq", req.Seq)
		case err != nil:
			w.log.Debug("socket not sent", "seq", req.Seq, "err", err)
		}
	}
	err := relaysock.Serve(w.sockets, open, answered)
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	w.log.Warn("socket requests ended", "err", err)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return // the worker is gone
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	w.kill(fmt.Sprintf("socket stream failed: %v", err))
}
