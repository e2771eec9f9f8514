// Package querier provides the router side of IGMP (IPv4) and MLD (IPv6) on
// the relay's output interfaces: the listener table — per interface and
// family, the groups with listeners, what sources they want, who reported
// last and when each runs out — and, where enabled, the querier that keeps
// snooping switches and hosts reporting, with the querier election.
//
// # Layers
//
//   - Wire formats (igmp.go, mld.go, packet.go, code.go, checksum.go): every
//     message of IGMPv1-3 (RFC 1112, 2236, 3376) and MLDv1-2 (RFC 2710,
//     3810) in one family-neutral Message; ParsePacket also makes the
//     IP-level checks a router makes (hop limit 1; for MLD the Router Alert
//     and a link-local source). Any OS.
//   - Router (router.go, state.go, election.go, table.go): the state machine
//     of one interface and family (RFC 3376 §6, RFC 3810 §7). It does no I/O
//     and reads no clock: callers pass the time, queries go to a Sender,
//     changes to an event function, and NextDeadline says when to call
//     Advance. Timers are deadlines in one heap of groups: no goroutine or
//     runtime timer per group, and no allocation per report once the table
//     holds its groups. Any OS.
//   - Interface (iface_linux.go, socket_linux.go): a Router per family on
//     one network interface, its sockets and the goroutine that feeds it.
//     Linux only. Opening one needs CAP_NET_RAW: the supervisor, which runs
//     as root, opens it; no worker ever holds these sockets.
//
// The package does not decide what to relay and does not join groups: the
// supervisor's memberships do that on the input side. It listens on the
// output side only.
//
// # How the supervisor will use it
//
// (The wiring is a later change; this is the contract it builds on.)
//
//   - One Interface per output interface, opened when the first rule with an
//     output there resolves and closed when the last goes or the interface's
//     ifindex changes (a recreated interface gets a fresh Interface and an
//     empty table): Open(ifindex, cfg, onEvent, log). cfg.Querier is set for
//     the interfaces of --querier IF[,IF…]; QueryInterval comes from
//     --query-interval (default 125 s); everything else keeps its default.
//     SetQuerier turns querying on or off on reload without losing the
//     table; RefreshAddresses follows netlink address changes at once
//     (the Interface re-reads its addresses every 5 s anyway).
//   - onEvent runs on the Interface's goroutine. Joined and Left are logged
//     at info ("listener joined", interface, group, reporter); RoleChanged
//     at info too. Each Joined, Left or FilterChanged for (ifindex, group)
//     makes the supervisor re-evaluate the outputs with "when_joined" on
//     that interface and group, and send the workers the changed gate.
//   - The gate of an output is Interface.Allowed(group, source), where
//     source is the address the output sends from — what the receivers see
//     and filter on — not the original sender's: an EXCLUDE{S} group allows
//     every source but S, INCLUDE{S1,S2} only those, and the zero address
//     asks "any listener at all". An output is active while Allowed is true
//     and idle otherwise; datagrams not sent while idle are not drops. It
//     turns idle within the Group Membership Interval (robustness × query
//     interval + query response interval, 260 s by default) after the last
//     listener stops answering, within the Last Member Query Time (2 s)
//     after a leave when we are the querier, and active at the first report.
//   - ListGroups / `mcrctl groups [--interface IF]` print Interface.Groups():
//     group, filter mode and sources, compatibility version, last reporter,
//     expiry; Status() adds the querier role, the querier's address and the
//     counters for /metrics (listeners per interface = len(Groups()) per
//     family; queries sent and received, reports, leaves, refused groups,
//     and receive drops by reason).
//
// # Deployment notes the wiring must document
//
// A snooping switch forwards reports only to its multicast router ports:
// ports where it hears queries (or, on Linux bridges, PIM hellos and
// multicast router advertisements). As the querier, the relay's port is
// one. When another querier wins the election, the switch may stop sending
// reports to the relay after its own querier timeout, and the listener
// table then empties; configure the relay's port as a static multicast
// router port (on a Linux bridge: `bridge link set dev PORT mcast_router 2`;
// for the bridge device itself, `ip link set BR type bridge mcast_router
// 2`) when the relay must follow listeners without being the querier.
package querier
