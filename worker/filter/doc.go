// Package filter provides the classic BPF program the worker attaches to each
// input interface's AF_PACKET socket, so that the kernel drops traffic no
// rule wants before it is copied to userspace.
//
// The program is built for a SOCK_DGRAM socket, where offset 0 is the IP
// header (packet(7)), from the (destination address, UDP destination port)
// pairs of the interface's rules. It is a prefilter: it accepts
// every datagram a rule wants, plus packets userspace must see to count them
// (fragments and IPv6 packets with extension headers, to listed
// destinations), and the worker's parser and rule lookup remain the judges of
// what is relayed. Rule sources are not filtered in the kernel: the lookup
// checks them.
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
// Build and DropAll are pure Go; Attach, which installs a program on a
// socket, is Linux-only.
package filter
