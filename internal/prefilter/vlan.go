package prefilter

import (
	"errors"

	"golang.org/x/net/bpf"
)

// vlanIDMask is the VLAN ID in a tag control information word (802.1Q).
const vlanIDMask = 0x0fff

// vlanGuard drops a frame that carried a VLAN tag with a VLAN ID and lets
// every other frame continue after it.
//
// The kernel takes a frame's outer VLAN tag out of the frame into skb
// metadata before packet sockets see it: the NIC or veth does (rx VLAN
// offload), or __netif_receive_skb_core does (skb_vlan_untag) before it
// delivers to taps, so the input's socket sees an untagged frame whatever
// the offload settings. Only the metadata still tells; SKF_AD_VLAN_TAG
// reads it (skb->vlan_tci, 0 when there is no tag). A tag with VLAN ID 0 is
// a priority tag (802.1p): no VLAN, the frame is the interface's own, as in
// the kernel's own receive path. Inner tags (QinQ) stay in the frame; the
// worker sees them in the EtherType.
var vlanGuard = [...]bpf.Instruction{
	bpf.LoadExtension{Num: bpf.ExtVLANTag},
	bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanIDMask},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 1},
	drop,
}

// rawVLANGuard and guardOnly are vlanGuard assembled, alone and followed by
// an accept; the guard's loads are ancillary, the same whatever the
// socket type and link header.
var rawVLANGuard, guardOnly = mustAssemble(vlanGuard[:]), mustAssemble(append(vlanGuard[:], accept))

func mustAssemble(insns []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		panic("filter: internal error: " + err.Error())
	}
	return raw
}

// DropVLANTagged returns a copy of prog, a program built by Build (its
// packet loads possibly made relative to another header), that first drops
// every frame that carried a VLAN tag with a VLAN ID: traffic of a VLAN,
// which belongs to that VLAN's interface and not to the input's.
//
// It is for a socket whose reader cannot see such a tag: the kernel removed
// it from the frame (see vlanGuard), and a socket without a TPACKET_V3
// ring gets no per-packet status (TP_STATUS_VLAN_VALID) unless it asks for
// a control message per packet (PACKET_AUXDATA). A reader with a ring can
// use prog as it is, let tagged frames to wanted destinations through, and
// drop and count them itself. Build leaves room for the guard: the result
// never exceeds MaxInstructions.
func DropVLANTagged(prog []bpf.RawInstruction) []bpf.RawInstruction {
	out := make([]bpf.RawInstruction, 0, len(rawVLANGuard)+len(prog))
	return append(append(out, rawVLANGuard...), prog...)
}

// ErrUnguarded reports that Attach left the socket without any filter, not
// even the guard against VLAN-tagged frames (see Attach): a reader without
// a receive ring can then not tell a tagged frame from the interface's own
// and must not relay from the socket. It does not wrap ErrUnfiltered.
var ErrUnguarded = errors.New("socket left without any filter, VLAN-tagged frames not dropped")
