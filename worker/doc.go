// Package worker provides mcr's data plane: the event loop of one worker
// process, which captures UDP datagrams on its inputs' AF_PACKET sockets,
// looks each up in its ruleset and republishes the payload to every output
// of the matching rule, while applying the supervisor's commands and pushing
// stats and logs to it.
//
// Run is the whole API; cmd/mcrd calls it for `mcrd worker`. The process
// inherits four fds by position (controlproto.CommandFD, StatsFD, LogFD,
// SocketFD): the command socketpair, read through the loop; the stats pipe,
// written a stats.Snapshot frame every stats interval (the snapshot is also
// the heartbeat); the log pipe, written one JSON record per write; and the
// socket socketpair, on which it asks the supervisor for every socket it
// relays on (internal/relaysock): the worker runs unprivileged and cannot
// open them (docs/security.md). Both pipes are written without blocking: a
// full pipe drops the record and counts it.
//
// # Data path
//
// One AF_PACKET SOCK_RAW socket with PACKET_VNET_HDR per input interface,
// in the PACKET_FANOUT group (FANOUT_CPU, DEFRAG, IGNORE_OUTGOING) that
// every worker of the daemon joins for that interface, with a classic BPF
// prefilter built from the interface's rules (worker/filter) whose loads
// are relative to the network header. Each packet arrives after a
// virtio_net_hdr and the device's link-layer header (14 bytes on Ethernet,
// none on tun), which are skipped; a frame that carried a VLAN tag is
// another interface's and dropped (dispatcher.forward); it is parsed
// (worker/packet), looked up by (ifindex, destination, port, source) in a
// ruleset.Table, its UDP checksum verified unless the kernel knows it, and
// each output's send points into the receive buffer: no copy per output. A UDP
// GSO aggregate, which veth, tun and loopback deliver unsegmented (from a
// sender using UDP_SEGMENT, or an upstream relay's GSO egress), is known by
// its virtio_net_hdr (gso_type UDP_L4) and split at gso_size into the
// datagrams it carries, each counted and relayed on its own, all from the
// one receive buffer.
// Packet buffers are one memory region mapped once outside the Go heap, each
// large enough for any datagram FANOUT_FLAG_DEFRAG can reassemble. Every
// output sends on the egress socket of its identity (see Egress). Sends
// never block: a full or failing output drops and counts, and never holds
// up others or ingress.
// No packet is dropped for want of a buffer (stats.WorkerCounters.
// BufferExhausted stays 0): a backlog waits in the socket's receive ring or
// buffer, and what overflows that is counted as kernel_drops.
//
// # Receive rings
//
// By default each input socket has a TPACKET_V3 receive ring
// (PACKET_RX_RING, set up by the supervisor before the socket joins its
// fanout group, mapped by the worker): Config.RingBlocks blocks of
// RingBlockSize bytes, which the kernel fills with packets in ring order
// and hands over one block at a time, when it is full or RingTimeout after
// it was opened. A busy input thus costs one wake-up per block rather than
// one per packet, and packets are dispatched straight from the block, each
// behind its tpacket3_hdr (rxRing, blockIter). A block goes back to the
// kernel when the last send pointing into it has completed; when the block
// the kernel wants next is still the worker's, the ring is frozen and the
// kernel drops (kernel_drops; freezes are logged). Sends never wait (a
// full socket fails one at once with EAGAIN, counted against its output;
// io_uring completes a MSG_DONTWAIT send rather than park it), so a block
// is held only until the sends of its dispatch are submitted: a full or
// failing output cannot keep it.
// FANOUT_FLAG_DEFRAG still reassembles IPv4 before the ring. The timeout
// is the latency cost: at low rates a packet waits up to RingTimeout (1 ms
// by default) for its block to be handed over. RingBlocks -1 turns rings
// off: packets are then received one by one into the worker's buffers.
//
// # Egress
//
// Outputs send through the supervisor's egress sockets, one per egress
// identity (relaysock.EgressKey: interface, family, source address and
// port, or the raw socket of transparent outputs), the same socket in
// every worker, so that an output leaves from one source whatever worker
// relays it. The sockets are not connected: outputs with different
// destinations share one, and each send names its destination (dest) and,
// for an output with a TTL of its own, an IP_TTL or IPV6_HOPLIMIT control
// message. A transparent output's datagram is a header the worker writes
// (transparent.go) and the payload. A datagram whose source is one of the
// worker's identities came back through a loop: it is counted (loops) and
// dropped (loopSet).
//
// The sends of one receive batch are queued per dest (sendQueue), and each
// run of equal-size datagrams, the last one possibly shorter, leaves as one
// send with UDP generic segmentation offload (a UDP_SEGMENT control
// message) whose iovecs point at the received payloads: one route lookup
// and one socket buffer per run instead of per datagram, while receivers
// still get the datagrams one by one, as sent. A run carries at most what
// the kernel takes (UDP_MAX_SEGMENTS, probed at start: 128, or 64 before
// Linux 6.9), 65,507 payload bytes over IPv4 or 65,527 over IPv6, and only
// segments that fit the socket's interface MTU with their headers (read
// when the socket opens, when the rules change and every five seconds);
// lone datagrams and odd sizes leave plainly. When the kernel refuses a
// run (after the MTU shrank; EIO where the device lacks checksum offload
// on kernels before 6.11) its datagrams are sent again one by one, and the
// socket narrows its limits or falls back to plain sends for good, logged
// and counted once (gso_fallbacks). gso_sends and gso_datagrams count the
// runs sent and the datagrams they carried.
//
// Two backends run the same loop: "uring" on one io_uring (a multishot
// poll per ring input, or a multishot receive with a provided-buffer ring
// per worker without rings, a SEND with the destination per plain
// datagram and a SENDMSG per run or transparent datagram, the command read
// and the timer), "mmsg" on poll(2), recvmmsg(2) (without rings) and
// sendmmsg(2), one message per plain datagram or run. The
// per-packet logic (dispatcher.forward, sendQueue) is shared and allocates
// nothing.
//
// # Rules
//
// A rule the worker cannot serve, fully or in part (an input socket that
// does not open, an output that does not resolve or whose socket the
// supervisor cannot open), is reported
// with stats.RuleCounters.Error and keeps serving whatever else it can; the
// worker never exits because of a rule. Sockets that failed to open are
// retried every five seconds. Counters are cumulative per rule id for as
// long as the rule exists in the worker, across changes to the rule; an
// output keeps its counters across a change when its destination stays.
//
// The event loop is Linux-only (_linux.go files); the rule database, the
// dispatcher, the reporter and the log writer build and test anywhere.
package worker
