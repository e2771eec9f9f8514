// Package pooltest provides a fake worker for tests of the worker pool and
// of the supervisor: a test binary that calls RunIfWorker from init runs as
// one when the pool spawns it with WorkerEnv set. The fake speaks the real
// worker protocol on fds 3, 4 and 5 and holds a ruleset as a worker does,
// so tests exercise the pool's protocol, restart and resync logic without
// root or a data plane; the *Env variables make it misbehave.
package pooltest
