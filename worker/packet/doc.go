// Package packet provides the worker's per-packet parser: it validates an
// IPv4 or IPv6 packet carrying one UDP datagram and locates its addresses,
// ports and payload, without allocating.
//
// The input is the packet starting at the IP header: the worker's input
// sockets are AF_PACKET SOCK_RAW (packet(7)), and it skips the
// virtio_net_hdr and the link-layer header before calling Parse;
// ParseEtherType takes the EtherType that preceded the IP header. Parsing
// is stricter than "find the payload": every packet the worker must drop and
// count (docs/troubleshooting.md) comes back with a Reason that names the
// counter — Malformed, Fragment, NotUDP or VLANTagged.
//
// Parse verifies the IPv4 header checksum, as ip_rcv would. It does not
// verify UDP checksums: the kernel has not checked them yet when AF_PACKET
// sees a packet, but whether one needs checking depends on what the kernel
// knows about the packet (verified by the NIC, or left partial by a local
// sender for offload), which only the caller has. UDPChecksumOK verifies
// one; the relay re-sends payloads through UDP sockets whose checksums the
// kernel computes anew, so a datagram it does not verify would leave with
// a fresh, valid checksum over corrupted bytes.
package packet
