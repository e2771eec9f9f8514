// Package relaysock provides the one implementation of the sockets a worker
// relays on — AF_PACKET ingress sockets joined to a PACKET_FANOUT group,
// unconnected UDP egress sockets (one per egress identity: interface,
// family, source address and port) and the raw IP sockets of transparent
// outputs — and the broker protocol over which the privileged supervisor
// opens them for an unprivileged worker and hands them over with
// SCM_RIGHTS.
//
// The worker asks on its socket socketpair (controlproto.SocketFD) with a
// Request frame (4-byte big-endian length + JSON, as every worker-protocol
// frame) and blocks for the Reply frame; the Reply carries the opened fd in
// an SCM_RIGHTS control message on the same sendmsg as its first byte, or
// the error that kept the supervisor from opening it. The supervisor (Serve)
// checks every request against the ruleset before opening anything, so a
// compromised worker gets only the sockets some rule needs; see
// docs/security.md. The supervisor opens each egress socket once and hands
// every worker a dup of it (an Opener may keep what it opens). A reply
// whose fd the worker cannot take (it is out of fds) is still read whole,
// so the stream keeps its framing; a worker that finds the replies out of
// frame anyway resynchronises the stream with a Resync request before its
// next one (Client).
//
// Both the supervisor and the worker import this package; they never import
// each other.
package relaysock
