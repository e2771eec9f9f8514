package ingressdrop

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Verdicts of a tcx program (enum tcx_action_base, include/uapi/linux/bpf.h).
const (
	// tcxNext gives no verdict: the next program on the hook decides, and
	// after the last one the packet goes on up the stack. Passing with
	// TCX_NEXT rather than TCX_PASS keeps programs others attached after
	// ours working.
	tcxNext = -1
	// tcxDrop drops the packet.
	tcxDrop = 2
)

// Offsets in struct __sk_buff (include/uapi/linux/bpf.h).
const (
	skbProtocol    = 16 // __u32 protocol: skb->protocol, network byte order
	skbVlanPresent = 20 // __u32 vlan_present
	skbVlanTCI     = 24 // __u32 vlan_tci
)

// bpfHdrStartNet makes bpf_skb_load_bytes_relative count from the network
// header (BPF_HDR_START_NET), wherever the link-layer header ends: 14
// bytes into an Ethernet frame, 0 on tun or WireGuard, whose packets start
// with the IP header.
const bpfHdrStartNet = 1

// The program's stack frame, as offsets from the frame pointer. Stack
// accesses must be aligned to their size (the verifier's
// check_ptr_alignment is strict for the stack).
const (
	stackKey     = -40           // the rules map key: see type key
	stackKeySrc  = stackKey      // 16 bytes
	stackKeyDst  = stackKey + 16 // 16 bytes
	stackKeyPort = stackKey + 32 // 2 bytes
	stackKeyPad  = stackKey + 34 // 2 bytes
	stackHdr     = -64           // the first 20 bytes of an IPv4 header, 8 of an IPv6 one
	stackZero    = -68           // a __u32 0: the key of the drops array
	ipprotoUDP   = unix.IPPROTO_UDP
	ipv4FragMask = 0x3fff // IPv4 flags+fragment offset: MF and the offset
)

// be16 returns v in network byte order as the program compares it with a
// 16-bit field it loaded: on a little-endian host the bytes of the
// number, swapped.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// v4MappedWord is bytes 8..11 of an IPv4-mapped IPv6 address, 00 00 ff ff,
// as the 32-bit word the program stores.
func v4MappedWord() int64 {
	return int64(int32(binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff})))
}

// newProgram loads the tcx ingress program that drops the UDP datagrams
// whose key (see type key) is in rules, a hash of key → __u8, and counts
// them in drops, a per-CPU array of one __u64.
//
// Roughly, in C:
//
//	if (skb->vlan_present && (skb->vlan_tci & 0xfff)) // the VLAN device's
//		return TCX_NEXT;
//	switch (skb->protocol) {
//	case ETH_P_IP:                                  // 20 bytes of header, IHL ≥ 5,
//		… not a fragment (MF = 0, offset 0), protocol UDP;
//		key = {::ffff:saddr, ::ffff:daddr, udp->dest}; break
//	case ETH_P_IPV6:                                // version 6, nexthdr UDP
//		key = {saddr, daddr, udp->dest}; break
//	default: return TCX_NEXT;
//	}
//	if (lookup(rules, key) || (key.src = 0, lookup(rules, key))) {
//		(*lookup(drops, 0))++; return TCX_DROP;
//	}
//	return TCX_NEXT;
//
// Every load goes through bpf_skb_load_bytes_relative, which fails on a
// packet too short for it; the program then passes the packet.
func newProgram(rules, drops *ebpf.Map) (*ebpf.Program, error) {
	insns, err := instructions(rules, drops)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "mcr_exclusive",
		Type:         ebpf.SchedCLS,
		AttachType:   ebpf.AttachTCXIngress,
		Instructions: insns,
		// No GPL-only helper is called; any valid license string does.
		License: "MIT",
	})
	if err != nil {
		return nil, fmt.Errorf("load ingress drop program: %w", err)
	}
	return prog, nil
}

func instructions(rules, drops *ebpf.Map) (asm.Instructions, error) {
	var p asm.Instructions
	emit := func(ins ...asm.Instruction) { p = append(p, ins...) }
	// loadBytes copies n bytes at offset off (a constant, or the register
	// offReg when it is not R0) from the network header to the stack at
	// to, and passes the packet if they are not there.
	loadBytes := func(off int32, offReg asm.Register, to int16, n int32) {
		emit(asm.Mov.Reg(asm.R1, asm.R6))
		if offReg != asm.R0 {
			emit(asm.Mov.Reg(asm.R2, offReg))
		} else {
			emit(asm.Mov.Imm(asm.R2, off))
		}
		emit(
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(to)),
			asm.Mov.Imm(asm.R4, n),
			asm.Mov.Imm(asm.R5, bpfHdrStartNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, "pass"),
		)
	}
	lookup := func(m *ebpf.Map, keyAt int16) error {
		ins := asm.LoadMapPtr(asm.R1, 0)
		if err := ins.AssociateMap(m); err != nil {
			return err
		}
		emit(ins,
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, int32(keyAt)),
			asm.FnMapLookupElem.Call(),
		)
		return nil
	}

	emit(
		asm.Mov.Reg(asm.R6, asm.R1), // R6 = skb, kept across calls
		// A VLAN-tagged frame, untagged into skb->vlan_tci before the
		// taps (skb_vlan_untag), is the VLAN device's business: the
		// stack takes it there, or, with no such device, drops it as
		// PACKET_OTHERHOST. A priority tag (VLAN id 0) is cleared and
		// the frame goes up this device's stack like an untagged one,
		// so it is matched like one (__netif_receive_skb_core).
		asm.LoadMem(asm.R2, asm.R6, skbVlanPresent, asm.Word),
		asm.JEq.Imm(asm.R2, 0, "untagged"),
		asm.LoadMem(asm.R2, asm.R6, skbVlanTCI, asm.Word),
		asm.And.Imm(asm.R2, 0x0fff), // VLAN id
		asm.JNE.Imm(asm.R2, 0, "pass"),
		asm.LoadMem(asm.R2, asm.R6, skbProtocol, asm.Word).WithSymbol("untagged"),
		asm.JEq.Imm(asm.R2, be16(unix.ETH_P_IP), "ipv4"),
		asm.JEq.Imm(asm.R2, be16(unix.ETH_P_IPV6), "ipv6"),
		asm.Ja.Label("pass"),
	)

	// IPv4: the fixed header, checked, then the key and the UDP
	// destination port at IHL*4 + 2.
	start := len(p)
	loadBytes(0, asm.R0, stackHdr, 20)
	p[start] = p[start].WithSymbol("ipv4")
	emit(
		asm.LoadMem(asm.R2, asm.RFP, stackHdr, asm.Byte), // version, IHL
		asm.Mov.Reg(asm.R3, asm.R2),
		asm.RSh.Imm(asm.R3, 4),
		asm.JNE.Imm(asm.R3, 4, "pass"),
		asm.And.Imm(asm.R2, 0x0f),
		asm.JLT.Imm(asm.R2, 5, "pass"),
		asm.LSh.Imm(asm.R2, 2),
		asm.Mov.Reg(asm.R7, asm.R2),                        // R7 = header length, kept across calls
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+6, asm.Half), // flags, fragment offset
		asm.And.Imm(asm.R2, be16(ipv4FragMask)),
		asm.JNE.Imm(asm.R2, 0, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+9, asm.Byte), // protocol
		asm.JNE.Imm(asm.R2, ipprotoUDP, "pass"),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, stackKeySrc, asm.R2, asm.DWord),
		asm.StoreImm(asm.RFP, stackKeySrc+8, v4MappedWord(), asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, stackHdr+12, asm.Word), // saddr
		asm.StoreMem(asm.RFP, stackKeySrc+12, asm.R3, asm.Word),
		asm.StoreMem(asm.RFP, stackKeyDst, asm.R2, asm.DWord),
		asm.StoreImm(asm.RFP, stackKeyDst+8, v4MappedWord(), asm.Word),
		asm.LoadMem(asm.R3, asm.RFP, stackHdr+16, asm.Word), // daddr
		asm.StoreMem(asm.RFP, stackKeyDst+12, asm.R3, asm.Word),
		asm.Add.Imm(asm.R7, 2), // udp->dest
	)
	loadBytes(0, asm.R7, stackKeyPort, 2)
	emit(asm.Ja.Label("lookup"))

	// IPv6: version and next header from the first 8 bytes, then saddr
	// and daddr (bytes 8..39, in the key's order) and the UDP
	// destination port right after the fixed header.
	start = len(p)
	loadBytes(0, asm.R0, stackHdr, 8)
	p[start] = p[start].WithSymbol("ipv6")
	emit(
		asm.LoadMem(asm.R2, asm.RFP, stackHdr, asm.Byte),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 6, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+6, asm.Byte), // next header
		asm.JNE.Imm(asm.R2, ipprotoUDP, "pass"),
	)
	loadBytes(8, asm.R0, stackKeySrc, 32)
	loadBytes(40+2, asm.R0, stackKeyPort, 2)

	// The source-specific key, then the any-source one.
	start = len(p)
	emit(asm.StoreImm(asm.RFP, stackKeyPad, 0, asm.Half))
	p[start] = p[start].WithSymbol("lookup")
	if err := lookup(rules, stackKey); err != nil {
		return nil, err
	}
	emit(
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, stackKeySrc, asm.R2, asm.DWord),
		asm.StoreMem(asm.RFP, stackKeySrc+8, asm.R2, asm.DWord),
	)
	if err := lookup(rules, stackKey); err != nil {
		return nil, err
	}
	emit(asm.JEq.Imm(asm.R0, 0, "pass"))

	// Count and drop. The counter is per CPU and tc runs in softirq
	// context, which does not preempt itself on a CPU, so a plain
	// increment needs no atomic.
	start = len(p)
	emit(asm.StoreImm(asm.RFP, stackZero, 0, asm.Word))
	p[start] = p[start].WithSymbol("drop")
	if err := lookup(drops, stackZero); err != nil {
		return nil, err
	}
	emit(
		asm.JEq.Imm(asm.R0, 0, "shot"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("shot"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	)
	return p, nil
}
