// Package prefilter provides the classic BPF program attached to each input
// interface's AF_PACKET socket, so that the kernel drops traffic no rule
// wants before it is copied to userspace. The worker builds it from its
// rules; the supervisor attaches it when it opens the socket for the worker
// (internal/relaysock), and the worker replaces it when the rules change.
// Both sides import this package, and it imports neither.
//
// Build assembles the program for a packet that starts at the IP header,
// from the (destination address, UDP destination port) pairs of the
// interface's rules. The relay's input sockets are SOCK_RAW (their packets
// start with the link-layer header, whose length depends on the device), so
// AtNetworkHeader makes every load relative to the network header before
// the program is attached. It is a prefilter: it accepts every datagram a
// rule wants, plus packets userspace must see to count them (fragments and
// IPv6 packets with extension headers, to listed destinations), and the
// worker's parser and rule lookup remain the judges of what is relayed.
// Rule sources are not filtered in the kernel: the lookup checks them.
//
// The program does not look at VLAN tags, which the kernel has taken out of
// the frame by the time the filter runs; DropVLANTagged puts a guard in
// front of it that drops tagged frames, for readers that cannot see the
// tag themselves.
//
// Programs are limited to MaxInstructions. A set too large for an exact
// program is coarsened (see Build) rather than refused; Build never fails on
// size.
//
// Build, AtNetworkHeader, ForInput and DropAll are pure Go; Attach, which
// installs a program on a socket, is Linux-only.
package prefilter
