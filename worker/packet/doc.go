// Package packet provides the worker's per-packet parser: it validates an
// IPv4 or IPv6 packet carrying one UDP datagram and locates its addresses,
// ports and payload, without allocating.
//
// The input is what an AF_PACKET SOCK_DGRAM socket delivers: the packet
// starting at the IP header, with the link-layer header already removed
// (packet(7)). Parse is stricter than "find the payload": every packet the
// worker must drop and count (docs/stats.md) comes back with a Reason that
// names the counter — Malformed, Fragment or NotUDP.
//
// The package does not verify UDP checksums. The kernel has not checked them
// yet when AF_PACKET sees a packet, but a locally generated or offloaded
// packet may legitimately carry only a partial checksum (CHECKSUM_PARTIAL on
// veth), and the relay re-sends the payload through UDP sockets whose
// checksums the kernel computes anew. The IPv4 header checksum is verified,
// as ip_rcv would.
package packet
