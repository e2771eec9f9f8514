package prefilter

import "golang.org/x/net/bpf"

// Classic BPF opcode fields (linux/bpf_common.h), spelled out so this file
// builds on any OS.
const (
	classMask = 0x07
	modeMask  = 0xe0
	classLD   = 0x00
	classLDX  = 0x01
	modeABS   = 0x20
	modeIND   = 0x40
	modeMSH   = 0xa0
	// netOff is SKF_NET_OFF (linux/filter.h, -0x100000) as the uint32
	// of a load's K: a load at netOff+k reads byte k of the network
	// header, wherever the link header ends.
	netOff uint32 = 0xfff00000
)

// AtNetworkHeader rewrites prog, a program built by Build for a packet that
// starts at the IP header, in place so that it runs on the relay's input
// sockets (AF_PACKET SOCK_RAW, where the link-layer header comes first and
// its length depends on the device): every packet load becomes relative to
// the network header (SKF_NET_OFF, filter(2)), which the kernel resolves per
// packet. Loads already relative to a header, and ancillary loads
// (SKF_AD_OFF), stay. It returns prog.
func AtNetworkHeader(prog []bpf.RawInstruction) []bpf.RawInstruction {
	for i := range prog {
		op := prog[i].Op
		switch {
		case int32(prog[i].K) < 0:
			// Already relative to a header, or an ancillary load:
			// not a packet offset.
		case op&classMask == classLD && (op&modeMask == modeABS || op&modeMask == modeIND),
			op&classMask == classLDX && op&modeMask == modeMSH:
			prog[i].K += netOff
		}
	}
	return prog
}

// ForInput returns the program to attach to an input socket: prog, from
// Build and AtNetworkHeader, behind DropVLANTagged unless the socket has a
// TPACKET_V3 receive ring. A ring's per-packet status shows the worker a
// VLAN tag the kernel took out of the frame, so tagged frames to wanted
// destinations may come up and be counted as vlan_tagged (an operator sees
// why a rule on the parent interface relays nothing); without a ring the
// worker could not tell them from the interface's own, and the kernel drops
// them uncounted.
func ForInput(prog []bpf.RawInstruction, ring bool) []bpf.RawInstruction {
	if ring {
		return prog
	}
	return DropVLANTagged(prog)
}
