package worker

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/mcrelay/mcr/controlproto"
)

// commands decodes the supervisor's command stream and applies it to the
// rule database. The loop feeds it what it read from the command socket and
// calls apply between receive batches.
type commands struct {
	dec  *controlproto.FrameDecoder
	sync controlproto.SyncAssembler
	log  *slog.Logger
	// fed reports whether bytes arrived since the last apply.
	fed bool
}

func newCommands(log *slog.Logger) *commands {
	return &commands{dec: controlproto.NewFrameDecoder(controlproto.MaxFrameSize), log: log}
}

// feed takes bytes read from the command socket; p is the caller's again
// when feed returns.
func (c *commands) feed(p []byte) {
	c.dec.Feed(p)
	c.fed = true
}

// apply applies every complete command fed so far to db and commits the
// changes. It stops at Shutdown and reports it. A frame that does not
// decode, or a command that makes no sense, is logged and skipped: the
// supervisor sees the worker's ruleset hash and resynchronises.
func (c *commands) apply(db *ruleDB) (shutdown bool) {
	c.fed = false
	before := db.Hash()
	defer func() {
		db.commit()
		if h := db.Hash(); h != before {
			c.log.Info("ruleset changed", "rules", db.Len(), "hash", h)
		}
	}()
	for {
		body, ok, err := c.dec.Next()
		if err != nil {
			c.log.Warn("protocol error", "err", err)
			continue
		}
		if !ok {
			return false
		}
		var cmd controlproto.WorkerCommand
		if err := json.Unmarshal(body, &cmd); err != nil {
			c.log.Warn("protocol error", "err", fmt.Errorf("decode command: %w", err))
			continue
		}
		if c.do(db, &cmd) {
			return true
		}
	}
}

// do applies one command and reports whether it was Shutdown.
func (c *commands) do(db *ruleDB, cmd *controlproto.WorkerCommand) bool {
	switch cmd.Type {
	case controlproto.WAddRule:
		if cmd.Rule == nil {
			c.log.Warn("protocol error", "err", "AddRule without a rule")
			return false
		}
		db.add(*cmd.Rule)
	case controlproto.WRemoveRule:
		if !db.remove(cmd.ID) {
			c.log.Warn("RemoveRule of an unknown rule", "rule", cmd.ID)
		}
	case controlproto.WSyncRules:
		rules, done, err := c.sync.Add(cmd)
		if err != nil {
			c.log.Warn("protocol error", "err", err)
			return false
		}
		if done {
			db.replaceAll(rules)
		}
	case controlproto.WTrace:
		db.setTraces(cmd.Traces)
	case controlproto.WShutdown:
		return true
	default:
		c.log.Warn("protocol error", "err", fmt.Sprintf("unknown command %q", cmd.Type))
	}
	return false
}
