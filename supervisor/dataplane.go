package supervisor

import "github.com/mcrelay/mcr/controlproto"

// dataPlane is the seam between the rule-owning half of the supervisor
// (control socket, master ruleset, netlink, memberships) and the half that
// runs worker processes (pool.go). Tests of the first half use a fake.
type dataPlane interface {
	// Update changes the ruleset every worker should hold: rules in add are
	// added (or replace the rule with the same ID), ids in remove are
	// removed. Running workers get AddRule/RemoveRule; a worker that starts
	// or is found out of sync gets SyncRules with the complete set.
	Update(add []controlproto.WorkerRule, remove []string)
	// Workers describes every worker slot (ListWorkers).
	Workers() []controlproto.WorkerInfo
}
