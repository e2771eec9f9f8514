// Package supervisor provides `mcrd supervisor`, the long-running daemon
// (docs/architecture.md): it owns the master ruleset, spawns and restarts
// the workers, joins the input groups (IGMP/MLD), resolves rules against
// the links it follows, aggregates stats and serves the operator control
// socket.
//
// Parts with a job of their own are packages below it, which it wires:
// supervisor/pool (the worker pool and the sockets it holds for workers),
// supervisor/links (the netlink view of interfaces and addresses, whose
// Events the master ruleset implements), supervisor/membership (the
// IGMP/MLD joins of the inputs, on pooled helper sockets),
// supervisor/tuning (host tuning advice) and supervisor/sdnotify (systemd
// notifications); they never import it nor each other.
//
// It never imports package worker: supervisor and workers meet only in
// controlproto and internal/relaysock (the socket broker), as the processes
// meet only over the socketpairs and pipes (internal/layering tests this).
// Process management and affinity live in _linux.go files.
package supervisor
