package supervisor

import (
	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/supervisor/tuning"
)

// dataPlane is the seam between the rule-owning half of the supervisor
// (control socket, master ruleset, netlink, memberships) and the half that
// runs worker processes (supervisor/pool). Tests of the first half use a fake.
type dataPlane interface {
	// Update changes the ruleset every worker should hold: rules in add are
	// added (or replace the rule with the same ID), ids in remove are
	// removed. Running workers get AddRule/RemoveRule; a worker that starts
	// or is found out of sync gets SyncRules with the complete set.
	Update(add []controlproto.WorkerRule, remove []string)
	// Workers describes every worker slot (ListWorkers).
	Workers() []controlproto.WorkerInfo
}

// tuningCheck wraps the data plane and hands every rule it sends to the
// workers to the tuning advice (tuning.Check), which warns about the
// host settings that would cost packets on the rule's input. The master
// calls Update with its lock held, which guards the check too.
type tuningCheck struct {
	dataPlane
	check *tuning.Check
}

// Update hands the change to the data plane, then to the check.
func (c tuningCheck) Update(add []controlproto.WorkerRule, remove []string) {
	c.dataPlane.Update(add, remove)
	c.check.Rules(add)
}
