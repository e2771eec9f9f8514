// Package ingressdrop provides "exclusive inputs": a tcx ingress program per
// input interface that drops the UDP datagrams mcr relays before the kernel's
// own IP and UDP receive path sees them, so a dedicated relay box spends no
// CPU on route and socket lookups (or ICMP) for the originals.
//
// The relay does not lose its copy: mcr's input sockets are AF_PACKET
// sockets bound with protocol ETH_P_ALL to the input interface, taps on the
// device's ptype_all list, and __netif_receive_skb_core (net/core/dev.c)
// delivers to those taps before it runs the tc ingress hook. A verdict of
// TCX_DROP there ends the packet's way up the stack, not the copies already
// queued to the taps. Local sockets on that interface stop receiving the
// dropped streams: that is the point, and why the feature is opt-in.
//
// What is dropped is exactly what a relay rule matches (ruleset.Table's
// semantics): unfragmented IPv4 UDP, and IPv6 UDP whose fixed header is
// followed directly by the UDP header, to one (destination, port) from the
// rule's source, or from any source when the rule names none. Everything
// else passes untouched: fragments (the kernel must reassemble them),
// packets with IPv6 extension headers, VLAN-tagged frames on their parent
// device (they belong to the VLAN device, whose tc hook is separate; a
// priority tag, VLAN id 0, does not count: such frames are the device's own),
// truncated or malformed headers, and every other protocol.
//
// Each interface's program is held by a BPF link (tcx, Linux 6.6 or later)
// whose only owner is a file descriptor of this process. Closing the
// Dropper, or the process ending in any way (SIGKILL, a crash), closes the
// descriptor and the kernel detaches the program: a relay that is not
// running never leaves traffic silently dropped. Kernels without tcx get
// ErrUnsupported; this package never falls back to netlink tc filters,
// which would outlive the process.
//
// The package is Linux-only; elsewhere Set returns ErrUnsupported.
package ingressdrop
