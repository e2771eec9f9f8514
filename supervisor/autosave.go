package supervisor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/mcrelay/mcr/controlproto"
)

// autosaver writes the ruleset to --config after every change an operator
// makes (--config-autosave, on by default), and the reply to that change
// waits until the file holds it, so an acknowledged change survives kill -9,
// an OOM kill or a power loss (writeConfigFile: temporary file, fsync,
// rename, fsync of the directory).
//
// Writes are group commits: a reply waiting for version v of the ruleset
// starts a write of the whole current ruleset if none is in flight (the
// ruleset then holds v and every change made since); replies that arrive
// while a write is in flight wait for it and, if it did not hold their
// change, for the next one, which one of them starts. However many changes
// arrive while the disk works, they cost one write, so 5,000 pipelined
// AddRules take about as many writes as a write takes to get through them.
type autosaver struct {
	path string
	log  *slog.Logger
	// snapshot returns the config file of the ruleset and the ruleset's
	// version (master.encodedConfig).
	snapshot func() ([]byte, uint64, error)

	mu      sync.Mutex
	done    *sync.Cond // broadcast when a write ends
	writing bool       // a write is in flight
	saved   uint64     // the newest version on disk
	// failed is the newest version whose write failed, and err why;
	// a change of a version in (saved, failed] is not on disk.
	failed uint64
	err    error
	writes int // writes done, for tests and logs
}

func newAutosaver(path string, log *slog.Logger, snapshot func() ([]byte, uint64, error)) *autosaver {
	a := &autosaver{path: path, log: log, snapshot: snapshot}
	a.done = sync.NewCond(&a.mu)
	return a
}

// pending returns the durability of a change: version v of the ruleset on
// disk. what names the change for the error: `rule "x" added`.
func (a *autosaver) pending(v uint64, what string) *pendingSave {
	return &pendingSave{a: a, v: v, what: what}
}

// settled reports whether waiting for v would return at once.
func (a *autosaver) settled(v uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.saved >= v || a.failed >= v
}

// wait returns nil once version v (or a later one) is on disk, or the error
// of the write that was to hold v.
func (a *autosaver) wait(v uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		switch {
		case a.saved >= v:
			return nil
		case a.failed >= v:
			return a.err
		case a.writing:
			a.done.Wait()
			continue
		}
		a.writing = true
		a.mu.Unlock()
		var version uint64
		err := writeConfigFile(a.path, func() (data []byte, err error) {
			data, version, err = a.snapshot()
			return data, err
		})
		a.mu.Lock()
		a.writing = false
		a.writes++
		if err != nil {
			if a.err == nil || a.err.Error() != err.Error() {
				a.log.Error("config not saved after a change", "path", a.path, "err", err)
			}
			// version is 0 when the write failed before its snapshot,
			// which would have held at least v.
			version = max(version, v)
			a.failed, a.err = max(a.failed, version), err
		} else {
			if a.err != nil {
				a.log.Info("config saved again after a failure", "path", a.path)
			}
			a.saved, a.err = max(a.saved, version), nil
		}
		a.done.Broadcast()
	}
}

// pendingSave is one change's wait for the disk; it implements durability.
type pendingSave struct {
	a    *autosaver
	v    uint64
	what string
}

func (p *pendingSave) settled() bool { return p.a.settled(p.v) }

// wait returns the error to reply instead of the change's result when the
// change could not be saved. The change stays in effect: see
// docs/operator-guide.md (The config file) for why it is not undone.
func (p *pendingSave) wait() *controlproto.Error {
	err := p.a.wait(p.v)
	if err == nil {
		return nil
	}
	return controlproto.Errorf(controlproto.CodeNotSaved,
		"%s and in effect, but not saved to %s, so mcrd would start without it: %v", p.what, p.a.path, err)
}

// durability is what a reply waits for before it is sent: its change on
// disk. A handler returns nil for none.
type durability interface {
	// settled reports whether wait would return at once.
	settled() bool
	// wait waits and returns the error to reply instead, nil when saved.
	wait() *controlproto.Error
}

// saved returns the durability of the change just made, described by what
// (`rule "x" added`); nil without --config or with --config-autosave=false.
func (d *daemon) saved(format string, args ...any) durability {
	if d.autosave == nil {
		return nil
	}
	return d.autosave.pending(d.master.currentVersion(), fmt.Sprintf(format, args...))
}

// serve is the control server's handlerFunc: handle, and for a change of
// the ruleset, its save to wait for.
func (d *daemon) serve(req controlproto.Request) (controlproto.Response, durability) {
	resp := d.handle(req)
	if !resp.OK {
		return resp, nil
	}
	switch req.Command {
	case controlproto.CmdAddRule:
		var res controlproto.IDResult
		_ = json.Unmarshal(resp.Result, &res) // handle encoded it
		return resp, d.saved("rule %q added", res.ID)
	case controlproto.CmdRemoveRule:
		return resp, d.saved("rule %q removed", req.ID)
	case controlproto.CmdLoadConfig:
		var res controlproto.LoadConfigResult
		if json.Unmarshal(resp.Result, &res) == nil && res.Added+res.Removed == 0 {
			return resp, nil // nothing changed
		}
		return resp, d.saved("config loaded")
	}
	return resp, nil
}
