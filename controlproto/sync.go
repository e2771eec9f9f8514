package controlproto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/mcrelay/mcr/ruleset"
)

// Canonical returns the canonical encoding of the resolved rule: the rule's
// own canonical encoding (ruleset.Rule.Canonical, which normalises a copy)
// followed by 'W' and, as signed varints, InputIfIndex, FanoutID,
// len(OutputIfIndex) and each OutputIfIndex; then, only when OutputAddrs
// is not empty, 'S', len(OutputAddrs) and for each output the number of its
// addresses and each address's text, length-prefixed. It shadows
// Rule.Canonical so that a rule re-resolved to new interface indexes or
// addresses encodes differently.
func (w WorkerRule) Canonical() []byte {
	b := w.Rule.Canonical()
	b = append(b, 'W')
	b = binary.AppendVarint(b, int64(w.InputIfIndex))
	b = binary.AppendVarint(b, int64(w.FanoutID))
	b = binary.AppendVarint(b, int64(len(w.OutputIfIndex)))
	for _, ix := range w.OutputIfIndex {
		b = binary.AppendVarint(b, int64(ix))
	}
	if len(w.OutputAddrs) > 0 {
		b = append(b, 'S')
		b = binary.AppendVarint(b, int64(len(w.OutputAddrs)))
		for _, addrs := range w.OutputAddrs {
			b = binary.AppendVarint(b, int64(len(addrs)))
			for _, a := range addrs {
				b = binary.AppendUvarint(b, uint64(len(a)))
				b = append(b, a...)
			}
		}
	}
	if slices.Contains(w.OutputIdle, true) {
		b = append(b, 'I')
		b = binary.AppendVarint(b, int64(len(w.OutputIdle)))
		for _, idle := range w.OutputIdle {
			b = append(b, boolByte(idle))
		}
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// HashWorkerRules is the ruleset hash of a resolved worker ruleset:
// ruleset.HashCanonical over each rule's WorkerRule.Canonical encoding, so
// the order of rules does not matter. The supervisor computes it over the
// ruleset it sends and each worker over the ruleset it holds, and the worker
// reports it in every stats.Snapshot; a difference makes the supervisor send
// SyncRules again. Both sides must hash exactly these encodings: either with
// this function, or, to avoid rehashing 100,000 rules (about 0.1 s) on every
// AddRule or RemoveRule, with a ruleset.SetHash to which they Add and Remove
// each WorkerRule.Canonical — it gives the same string.
func HashWorkerRules(rules []WorkerRule) string {
	encs := make([][]byte, len(rules))
	for i := range rules {
		encs[i] = rules[i].Canonical()
	}
	return ruleset.HashCanonical(encs)
}

// SyncCommands splits the complete ruleset rules into SyncRules commands
// whose frame bodies are at most maxBody bytes each (maxBody <= 0 means
// MaxFrameSize): parts numbered 0..Parts-1, each carrying the hash of the
// whole set. An empty ruleset is one part without rules. The commands share
// rules' backing array. It fails only when one rule alone does not fit.
func SyncCommands(rules []WorkerRule, maxBody int) ([]WorkerCommand, error) {
	if maxBody <= 0 {
		maxBody = MaxFrameSize
	}
	hash := HashWorkerRules(rules)
	// The envelope with the largest part numbers the split can produce,
	// plus `,"rules":[]`, bounds every part's fixed cost.
	bound := max(len(rules), 1)
	envelope, err := json.Marshal(WorkerCommand{Type: WSyncRules, Hash: hash, Part: bound, Parts: bound})
	if err != nil {
		return nil, fmt.Errorf("encode SyncRules envelope: %w", err)
	}
	fixed := len(envelope) + len(`,"rules":[]`)

	var starts []int // index of each part's first rule
	size := maxBody  // forces a new part at the first rule
	for i := range rules {
		enc, err := json.Marshal(&rules[i])
		if err != nil {
			return nil, fmt.Errorf("encode rule %q: %w", rules[i].ID, err)
		}
		n := len(enc) + 1 // the comma before it, counted for every rule
		if fixed+n > maxBody {
			return nil, fmt.Errorf("split SyncRules: rule %q encodes to %d bytes, more than a %d-byte frame holds", rules[i].ID, len(enc), maxBody)
		}
		if size+n > maxBody {
			starts = append(starts, i)
			size = fixed
		}
		size += n
	}
	if len(starts) == 0 {
		return []WorkerCommand{{Type: WSyncRules, Hash: hash, Part: 0, Parts: 1}}, nil
	}
	cmds := make([]WorkerCommand, len(starts))
	for p, start := range starts {
		end := len(rules)
		if p+1 < len(starts) {
			end = starts[p+1]
		}
		cmds[p] = WorkerCommand{Type: WSyncRules, Rules: rules[start:end:end], Hash: hash, Part: p, Parts: len(starts)}
	}
	return cmds, nil
}

// SyncAssembler collects the parts of a SyncRules on the worker side. Parts
// must arrive in order, each with the Parts and Hash of the first; a part 0
// always starts a new ruleset, abandoning an incomplete one (the supervisor
// resent). It is not safe for concurrent use; the zero value is ready.
type SyncAssembler struct {
	hash  string
	parts int
	next  int // the part expected next; 0 when idle
	rules []WorkerRule
}

// Add takes one SyncRules command. When cmd is the last part, Add returns
// the complete ruleset, owned by the caller, with done set. Any
// inconsistency (a part out of order, a changed Parts or Hash) returns an
// error and drops the parts collected so far; the worker keeps its previous
// ruleset and the supervisor, seeing the old hash in the worker's stats,
// sends SyncRules again. Add does not hash the assembled rules: the worker
// hashes what it installs and reports that, which is the end-to-end check.
func (a *SyncAssembler) Add(cmd *WorkerCommand) (rules []WorkerRule, done bool, err error) {
	if err := a.accept(cmd); err != nil {
		a.reset()
		return nil, false, fmt.Errorf("assemble SyncRules: %w", err)
	}
	a.rules = append(a.rules, cmd.Rules...)
	a.next++
	if a.next < a.parts {
		return nil, false, nil
	}
	rules = a.rules
	if rules == nil {
		rules = []WorkerRule{}
	}
	a.reset()
	return rules, true, nil
}

// accept checks cmd against the parts collected so far, starting a new
// ruleset at part 0.
func (a *SyncAssembler) accept(cmd *WorkerCommand) error {
	switch {
	case cmd.Type != WSyncRules:
		return fmt.Errorf("command %s is not %s", strconv.Quote(cmd.Type), WSyncRules)
	case cmd.Parts < 1 || cmd.Part < 0 || cmd.Part >= cmd.Parts:
		return fmt.Errorf("part %d of %d is out of range", cmd.Part, cmd.Parts)
	case cmd.Part == 0:
		a.reset()
		a.hash, a.parts = cmd.Hash, cmd.Parts
		return nil
	case a.next == 0:
		return fmt.Errorf("part %d of %d arrived without part 0", cmd.Part, cmd.Parts)
	case cmd.Part != a.next:
		return fmt.Errorf("part %d of %d arrived, expected part %d", cmd.Part, cmd.Parts, a.next)
	case cmd.Parts != a.parts || cmd.Hash != a.hash:
		return fmt.Errorf("part %d says %d parts of ruleset %s, part 0 said %d parts of %s",
			cmd.Part, cmd.Parts, cmd.Hash, a.parts, a.hash)
	}
	return nil
}

func (a *SyncAssembler) reset() {
	*a = SyncAssembler{}
}
