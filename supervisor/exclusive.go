package supervisor

import (
	"log/slog"
	"maps"
	"slices"

	"github.com/mcrelay/mcr/ingressdrop"
)

// inputDropper is the seam between the master and package ingressdrop
// (--exclusive-inputs): per input ifindex, the streams the kernel's own
// receive path should no longer see. *ingressdrop.Dropper implements it;
// tests script a fake.
type inputDropper interface {
	// Set makes the interface drop exactly matches; an empty set detaches.
	Set(ifindex int, matches []ingressdrop.Match) error
	// Dropped is how many datagrams the interface's program dropped since
	// it was attached; false when none is.
	Dropped(ifindex int) (uint64, bool)
	// Close detaches everything.
	Close() error
}

var _ inputDropper = (*ingressdrop.Dropper)(nil)

// exclusiveInputs keeps the dropper in line with the rules the data plane
// holds: on every input ifindex, the streams of the rules sent with it.
// A failure on one interface (a kernel without tcx, missing CAP_BPF) is
// logged once per interface and error, and relaying goes on without
// exclusivity: the feature saves CPU, it never decides whether mcr relays.
// The master's mutex guards it.
type exclusiveInputs struct {
	dropper inputDropper
	// errs holds, per ifindex with matches, the error its last Set
	// returned, so that a repeated failure is logged once.
	errs map[int]string
	// on holds the ifindexes whose program is attached.
	on map[int]bool
}

func newExclusiveInputs(d inputDropper) *exclusiveInputs {
	return &exclusiveInputs{dropper: d, errs: map[int]string{}, on: map[int]bool{}}
}

// sync sets, on each of ifindexes, the streams of m's rules sent with that
// input ifindex. Only the rules on the interface's name are looked at, so
// that a rule added on its own costs the rules of its interface, not of
// the whole ruleset. The caller holds m.mu.
func (x *exclusiveInputs) sync(m *master, ifindexes map[int]bool) {
	for _, ix := range slices.Sorted(maps.Keys(ifindexes)) {
		l, _ := m.links.ByIndex(ix)
		name := l.Name // "" when the link is gone: no rule is sent on it
		var want []ingressdrop.Match
		for _, e := range m.byInput[name] {
			if e.sent != nil && e.sent.InputIfIndex == ix {
				want = append(want, ingressdrop.Match{Group: e.group, Port: uint16(e.rule.Input.Port), Source: e.src})
			}
		}
		x.set(m.log, name, ix, want)
	}
}

// set sets matches on ifindex (named name, "" when the link is gone) and
// logs what changed.
func (x *exclusiveInputs) set(log *slog.Logger, name string, ifindex int, matches []ingressdrop.Match) {
	err := x.dropper.Set(ifindex, matches)
	attrs := []any{"interface", name, "ifindex", ifindex}
	if err != nil {
		if msg := err.Error(); x.errs[ifindex] != msg {
			log.Warn("exclusive input not in effect; relaying goes on without it", append(attrs, "err", err)...)
			x.errs[ifindex] = msg
		}
		if len(matches) == 0 {
			delete(x.errs, ifindex)
			delete(x.on, ifindex)
		}
		return
	}
	delete(x.errs, ifindex)
	switch on := len(matches) > 0; {
	case on && !x.on[ifindex]:
		log.Info("exclusive input on: the kernel no longer receives the relayed streams itself",
			append(attrs, "streams", len(matches))...)
		x.on[ifindex] = true
	case !on && x.on[ifindex]:
		log.Info("exclusive input off", attrs...)
		delete(x.on, ifindex)
	}
}

// dropped returns, per interface name, the datagrams dropped since its
// program was attached. The caller holds m.mu.
func (x *exclusiveInputs) dropped(m *master) map[string]uint64 {
	out := map[string]uint64{}
	for ix := range x.on {
		l, ok := m.links.ByIndex(ix)
		if n, attached := x.dropper.Dropped(ix); ok && attached {
			out[l.Name] = n
		}
	}
	return out
}

// close detaches every program.
func (x *exclusiveInputs) close(log *slog.Logger) {
	if err := x.dropper.Close(); err != nil {
		log.Warn("detach exclusive inputs", "err", err)
	}
	clear(x.on)
	clear(x.errs)
}
