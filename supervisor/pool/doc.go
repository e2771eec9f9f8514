// Package pool provides the supervisor's worker pool: one slot per worker
// core, each running a succession of `mcrd worker` processes — spawned
// pinned and unprivileged, fed the ruleset (AddRule/RemoveRule, SyncRules
// when they start or drift), watched through their stats snapshots and
// restarted with backoff — and the sockets the pool holds for them: each
// input's fanout group with one member per slot, the egress sockets per
// egress identity, served to the workers over the socket broker
// (internal/relaysock). Pool is the supervisor's data plane.
//
// It knows nothing of the control socket, links or memberships: the
// supervisor hands it resolved rules (controlproto.WorkerRule). Process
// management, affinity and sockets live in _linux.go files; the command
// queue and the pool's life are state machines in plain files.
package pool
