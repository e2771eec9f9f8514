// Package worker provides mcr's data plane: the event loop of one worker
// process, which captures UDP datagrams on its inputs' AF_PACKET sockets,
// looks each up in its ruleset and republishes the payload to every output
// of the matching rule, while applying the supervisor's commands and pushing
// stats and logs to it.
//
// Run is the whole API; cmd/mcrd calls it for `mcrd worker`. The process
// inherits three fds by position (controlproto.CommandFD, StatsFD, LogFD):
// the command socketpair, read through the loop; the stats pipe, written a
// stats.Snapshot frame every stats interval (the snapshot is also the
// heartbeat); and the log pipe, written one JSON record per write. Both pipes
// are written without blocking: a full pipe drops the record and counts it.
//
// # Data path
//
// One AF_PACKET SOCK_DGRAM socket per input interface, in the PACKET_FANOUT
// group (FANOUT_CPU, DEFRAG, IGNORE_OUTGOING) that every worker of the daemon
// joins for that interface, with a classic BPF prefilter built from the
// interface's rules (worker/filter). Packets are parsed (worker/packet),
// looked up by (ifindex, destination, port, source) in a ruleset.Table, and
// each output's send points into the receive buffer: no copy per output.
// Packet buffers are one memory region mapped once outside the Go heap, each
// large enough for any datagram FANOUT_FLAG_DEFRAG can reassemble. Every
// output sends on a connected UDP socket; outputs with equal destination,
// interface, TTL and source share one socket. Sends never block: a full or
// failing output drops and counts, and never holds up others or ingress.
// No packet is dropped for want of a buffer (stats.WorkerCounters.
// BufferExhausted stays 0): a backlog waits in the socket's receive buffer,
// and what overflows that is counted as kernel_drops.
//
// Two backends run the same loop: "uring" on one io_uring (multishot receive
// with a provided-buffer ring per worker, sends, the command read and the
// timer), "mmsg" on poll(2), recvmmsg(2) and sendmmsg(2). The per-packet
// logic (dispatcher.forward) is shared and allocates nothing.
//
// # Rules
//
// A rule the worker cannot serve, fully or in part (an input socket that
// does not open, an output that does not resolve or connect), is reported
// with stats.RuleCounters.Error and keeps serving whatever else it can; the
// worker never exits because of a rule. Sockets that failed to open are
// retried every five seconds. Counters are cumulative per rule id for as
// long as the rule exists in the worker, across changes to the rule; an
// output keeps its counters across a change when its destination stays.
//
// The event loop is Linux-only (_linux.go files); the rule database, the
// dispatcher, the reporter and the log writer build and test anywhere.
package worker
