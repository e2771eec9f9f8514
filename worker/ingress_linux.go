package worker

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/worker/filter"
)

// buildFilter assembles the prefilter of an input, its loads relative to
// the network header (atNetworkHeader); a set too large for an exact
// program gets a coarser one that still accepts everything wanted.
func buildFilter(ifindex int, matches []inputMatch) ([]bpf.RawInstruction, error) {
	fm := make([]filter.Match, len(matches))
	for i, m := range matches {
		fm[i] = filter.Match{Dst: m.Dst, Port: m.Port}
	}
	p, err := filter.Build(fm)
	if err != nil {
		return nil, fmt.Errorf("build filter for ifindex %d: %w", ifindex, err)
	}
	return atNetworkHeader(p.Instructions), nil
}

// inputFilter is buildFilter for in, or, while a rule on in is traced, a
// program that accepts every packet: a trace shows the packets no rule
// wants (wrong group, port or source) only if they reach the worker.
func inputFilter(in *input, matches []inputMatch) ([]bpf.RawInstruction, error) {
	if in.traced {
		return []bpf.RawInstruction{{Op: 0x06, K: filter.SnapLen}}, nil // BPF_RET|BPF_K
	}
	return buildFilter(in.ifindex, matches)
}

// inputProgram returns the prefilter to attach to in's open socket: prog,
// from buildFilter, behind filter.DropVLANTagged unless in has a receive
// ring. A ring's per-packet status shows the worker a VLAN tag the kernel
// took out of the frame, so tagged frames to wanted destinations may come
// up and be counted as vlan_tagged (an operator sees why a rule on the
// parent interface relays nothing); without a ring the worker could not
// tell them from the interface's own, and the kernel drops them uncounted.
func inputProgram(prog []bpf.RawInstruction, in *input) []bpf.RawInstruction {
	if in.ring != nil {
		return prog
	}
	return filter.DropVLANTagged(prog)
}

// linkHeaderLen returns how many bytes of link-layer header precede the IP
// header in what the input socket fd on ifindex receives. The socket is
// SOCK_RAW, which PACKET_VNET_HDR requires (relaysock.OpenIngress), so a
// frame keeps the header of a device that has one: Ethernet's 14 bytes
// (veth, bridges, VLANs, macvlan, loopback), none on IP-level devices
// (tun, WireGuard, IPIP and SIT tunnels). Other link types are refused
// rather than parsed at a guessed offset.
func linkHeaderLen(fd, ifindex int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("read link type of input on ifindex %d: %w", ifindex, err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return 0, fmt.Errorf("read link type of input on ifindex %d: not an AF_PACKET socket", ifindex)
	}
	switch ll.Hatype {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return 14, nil
	case unix.ARPHRD_NONE, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6, unix.ARPHRD_SIT, unix.ARPHRD_RAWIP:
		return 0, nil
	}
	return 0, fmt.Errorf("open input on ifindex %d: link type %d (ARPHRD) not supported", ifindex, ll.Hatype)
}

// atNetworkHeader rewrites a filter built for a packet that starts at the
// IP header so that it runs on a SOCK_RAW socket whatever the link-layer
// header: every packet load becomes relative to the network header
// (SKF_NET_OFF, filter(2)), which the kernel resolves per packet.
func atNetworkHeader(prog []bpf.RawInstruction) []bpf.RawInstruction {
	const (
		classMask = 0x07
		modeMask  = 0xe0
	)
	netOff := int32(-0x100000) // SKF_NET_OFF, linux/filter.h
	for i := range prog {
		op := prog[i].Op
		switch {
		case int32(prog[i].K) < 0:
			// Already relative to a header, or an ancillary load
			// (SKF_AD_OFF): not a packet offset.
		case op&classMask == unix.BPF_LD && (op&modeMask == unix.BPF_ABS || op&modeMask == unix.BPF_IND),
			op&classMask == unix.BPF_LDX && op&modeMask == unix.BPF_MSH:
			prog[i].K += uint32(netOff)
		}
	}
	return prog
}
