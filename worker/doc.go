// Package worker provides mcr's data plane: the event loop of one worker
// process, which receives the UDP datagrams of its rules' inputs, looks
// each up in its ruleset and republishes the payload to every output of the
// matching rule, while applying the supervisor's commands and pushing
// stats and logs to it. docs/architecture.md describes the data path
// (AF_PACKET ingress, receive rings, UDP GSO egress, the two backends);
// this comment is the package's contract.
//
// # API and boundaries
//
// Run is the whole API; cmd/mcrd calls it for `mcrd worker`, which only
// the supervisor starts. The process inherits four fds by position
// (controlproto.CommandFD, StatsFD, LogFD, SocketFD): the command
// socketpair, on which it reads the controlproto worker commands; the
// stats pipe, on which it writes a stats.Snapshot frame every stats
// interval (the snapshot is also its heartbeat); the log pipe, one JSON
// record per write; and the socket socketpair, on which it asks the
// supervisor for every socket it relays on (internal/relaysock). It runs
// unprivileged, checks that before anything else, and could not open
// those sockets itself (docs/security.md). It exits 0 on
// Shutdown or when the command socket closes.
//
// The worker meets the supervisor only in controlproto, stats, ruleset and
// internal/relaysock: neither package imports the other. Both pipes are written without blocking: a full pipe
// drops the record and counts it (stats_dropped, logs_dropped), so a
// starved supervisor never stalls the data path.
//
// Its input sockets are duplicates of the sockets the supervisor keeps for
// the worker's slot, across the slot's workers (docs/architecture.md,
// "Worker restarts"): a worker relays first, in order, what an earlier
// worker of its slot left queued in a socket's receive ring, from the
// packet that one stopped at, which every worker records in the ring's
// blocks, or marks in its frames, as it goes (rxring_takeover.go).
//
// A rule the worker cannot serve, fully or in part (an input socket that
// does not open, an output that does not resolve or whose socket the
// supervisor cannot open), is reported
// in stats.RuleCounters.Error while the worker serves whatever else it
// can; the worker never exits because of a rule, and asks again for
// sockets that failed every five seconds. Counters are cumulative per rule
// id for as long as the rule exists in the worker, across changes to the
// rule; an output keeps its counters across a change when its destination
// stays.
//
// # Hot path
//
// One OS thread, locked and pinned to the worker's core, runs the loop and
// owns everything it touches. Per packet there is no allocation, no lock
// and no system call beyond the backend's batched receives and sends: the
// per-packet code (parse, lookup, dispatch, the per-destination send
// queues that form UDP GSO runs) is shared by both backends, and tests
// check that it allocates nothing. Packets are relayed from where they were received
// (a receive-ring frame or block, or a buffer mapped once outside the Go
// heap; a packet larger than a frame costs one recvfrom into a copy buffer),
// reference-counted across the sends of their outputs: no copy per output.
// Sends never block: a full or failing output drops and counts, and never
// holds up ingress or another output.
//
// Outputs send on the supervisor's egress sockets, one per egress identity
// (relaysock.EgressKey), the same in every worker, so an output leaves
// from one source whatever worker relays it; the sockets are not connected
// and each send names its destination (dest). A transparent output's
// datagram is headers the worker writes (origin) and the payload, on a
// raw socket. A datagram whose source is one of the worker's identities
// is its own output come back through a loop: counted (loops) and dropped
// (loopSet).
//
// The event loop is Linux-only (_linux.go files); the rule database, the
// dispatcher, the reporter and the log writer build and test anywhere.
package worker
