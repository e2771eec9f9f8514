// Package supervisor provides `mcrd supervisor`, the long-running daemon
// (docs/architecture.md): it owns the master ruleset, spawns and restarts
// the workers, joins the input groups (IGMP/MLD), follows links over
// netlink, aggregates stats and serves the operator control socket.
//
// It never imports package worker: supervisor and workers meet only in
// controlproto, as the processes meet only over the socketpair and pipes.
// Process management, affinity and netlink live in _linux.go files.
package supervisor
