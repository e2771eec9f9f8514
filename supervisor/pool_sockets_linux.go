package supervisor

import (
	"errors"
	"net"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// serveSockets opens the sockets worker w asks for on its socket
// socketpair and hands them over, as long as a rule of the pool's ruleset
// needs them, until w closes its end or its life is torn down. The worker
// runs without the privileges to open them itself (docs/security.md).
func (p *Pool) serveSockets(w *workerProc) {
	err := relaysock.Serve(w.sockets, func(req relaysock.Request) error {
		p.mu.Lock()
		err := p.grants.Allow(req)
		p.mu.Unlock()
		if err != nil {
			w.log.Warn("socket request refused", "err", err)
		}
		return err
	})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		w.log.Warn("socket requests ended", "err", err)
	}
}
