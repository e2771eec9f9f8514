package worker

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/prefilter"
)

// buildFilter assembles the prefilter of an input, its loads relative to
// the network header (prefilter.AtNetworkHeader); a set too large for an
// exact program gets a coarser one that still accepts everything wanted.
func buildFilter(ifindex int, matches []inputMatch) ([]bpf.RawInstruction, error) {
	fm := make([]prefilter.Match, len(matches))
	for i, m := range matches {
		fm[i] = prefilter.Match{Dst: m.Dst, Port: m.Port}
	}
	p, err := prefilter.Build(fm)
	if err != nil {
		return nil, fmt.Errorf("build filter for ifindex %d: %w", ifindex, err)
	}
	return prefilter.AtNetworkHeader(p.Instructions), nil
}

// inputFilter is buildFilter for in, or, while a rule on in is traced, a
// program that accepts every packet: a trace shows the packets no rule
// wants (wrong group, port or source) only if they reach the worker.
func inputFilter(in *input, matches []inputMatch) ([]bpf.RawInstruction, error) {
	if in.traced {
		return []bpf.RawInstruction{{Op: 0x06, K: prefilter.SnapLen}}, nil // BPF_RET|BPF_K
	}
	return buildFilter(in.ifindex, matches)
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
