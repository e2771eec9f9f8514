// Command tcredirect is the "kernel path" reference that scripts/bench/run.sh
// and latency.sh measure mcr against on kernels without multicast routing
// (CONFIG_IP_MROUTE), where smcroute cannot run: a tc ingress eBPF program on
// the input interface that does what a forwarding kernel would do for one
// IPv4 stream — plus the group and port translation kernel forwarding cannot
// do — with no socket and no process on the path.
//
// For each IPv4 UDP datagram to the input group and port on the input
// interface (not a fragment, a 20-byte header) it rewrites the destination
// address and port, sets the TTL, fixes the IP and UDP checksums
// incrementally, sets the destination MAC to the output group's and the
// source MAC to each output interface's, and sends a copy out of every
// output interface (bpf_clone_redirect, then bpf_redirect for the last). The
// source address stays the sender's, as with kernel forwarding. Everything
// else passes untouched.
//
//	tcredirect --input-interface r0 --input-group 239.1.1.1 --input-port 5001 \
//	    --outputs 239.2.2.2:6000:r1[,239.2.2.2:6000:r2...] [--ttl 8]
//
// All outputs must name the same group and port (the benchmark's do). It
// attaches with tcx (Linux 6.6), prints "ready" on stdout, runs until SIGINT
// or SIGTERM, and then prints its counter as one JSON line. The program
// belongs to this process's link: it is detached when the process exits,
// however it exits. It is a benchmark reference, not part of mcr.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Flags of bpf_l4_csum_replace (include/uapi/linux/bpf.h): the low bits give
// the field size; PSEUDO_HDR says the field is part of the pseudo-header;
// MARK_MANGLED_0 keeps a zero (absent) UDP checksum zero.
const (
	fPseudoHdr    = 1 << 4
	fMarkMangled0 = 1 << 5
)

// tcxNext passes the packet on (enum tcx_action_base).
const tcxNext = -1

// Offsets: skb->protocol in struct __sk_buff, and the headers of an
// Ethernet frame carrying IPv4 with a 20-byte header.
const (
	skbProtocol = 16
	ethDst      = 0
	ethSrc      = 6
	ipOff       = 14
	ipTTL       = ipOff + 8 // TTL and protocol: one 16-bit word
	ipCsum      = ipOff + 10
	ipDaddr     = ipOff + 16
	udpDport    = ipOff + 20 + 2
	udpCsum     = ipOff + 20 + 6
)

// Stack slots, offsets from the frame pointer.
const (
	stackHdr  = -24 // the 20-byte IPv4 header
	stackPort = -28 // the UDP destination port
	stackTmp  = -40 // up to 8 bytes to store into the packet
	stackZero = -44 // key 0 of the counter array
)

type output struct {
	group   netip.Addr
	port    uint16
	ifindex int
	mac     net.HardwareAddr
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tcredirect:", err)
		os.Exit(1)
	}
}

func run() error {
	inIf := flag.String("input-interface", "", "interface to attach to")
	inGroup := flag.String("input-group", "", "input IPv4 group")
	inPort := flag.Int("input-port", 0, "input UDP port")
	outSpec := flag.String("outputs", "", "GROUP:PORT:IF[,GROUP:PORT:IF...]")
	ttl := flag.Int("ttl", 8, "TTL of the relayed datagrams")
	flag.Parse()

	in, err := net.InterfaceByName(*inIf)
	if err != nil {
		return err
	}
	group, err := netip.ParseAddr(*inGroup)
	if err != nil || !group.Is4() {
		return fmt.Errorf("input group %q: want an IPv4 address", *inGroup)
	}
	if *inPort < 1 || *inPort > 65535 || *ttl < 1 || *ttl > 255 {
		return errors.New("input port or TTL out of range")
	}
	outs, err := parseOutputs(*outSpec)
	if err != nil {
		return err
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("create counter: %w", err)
	}
	defer counter.Close()
	insns, err := program(group, uint16(*inPort), uint8(*ttl), outs, counter)
	if err != nil {
		return err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "mcr_tcredirect", Type: ebpf.SchedCLS, AttachType: ebpf.AttachTCXIngress,
		Instructions: insns, License: "GPL", // bpf_clone_redirect is GPL-only
	})
	if err != nil {
		return fmt.Errorf("load program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: in.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attach to %s ingress: %w", in.Name, err)
	}
	defer l.Close()
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	var perCPU []uint64
	if err := counter.Lookup(uint32(0), &perCPU); err != nil {
		return fmt.Errorf("read counter: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]uint64{"redirected": n})
}

func parseOutputs(spec string) ([]output, error) {
	var outs []output
	for _, s := range strings.Split(spec, ",") {
		f := strings.Split(s, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("output %q: want GROUP:PORT:IF", s)
		}
		g, err := netip.ParseAddr(f[0])
		if err != nil || !g.Is4() || !g.IsMulticast() {
			return nil, fmt.Errorf("output %q: want an IPv4 multicast group", s)
		}
		p, err := strconv.Atoi(f[1])
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("output %q: bad port", s)
		}
		ifi, err := net.InterfaceByName(f[2])
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", s, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return nil, fmt.Errorf("output %q: not an Ethernet interface", s)
		}
		o := output{group: g, port: uint16(p), ifindex: ifi.Index, mac: ifi.HardwareAddr}
		if len(outs) > 0 && (o.group != outs[0].group || o.port != outs[0].port) {
			return nil, errors.New("all outputs must name the same group and port")
		}
		outs = append(outs, o)
	}
	if len(outs) == 0 {
		return nil, errors.New("no outputs")
	}
	return outs, nil
}

// raw32 and raw16 return network-order bytes as the integer a load of them
// puts in a register, which is how the checksum helpers take old and new
// values (__be32, __be16).
func raw32(b []byte) int64 { return int64(binary.NativeEndian.Uint32(b)) }
func raw16(b []byte) int64 { return int64(binary.NativeEndian.Uint16(b)) }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// program returns the instructions; see the package comment for what they do.
func program(group netip.Addr, port uint16, ttl uint8, outs []output, counter *ebpf.Map) (asm.Instructions, error) {
	inG, outG := group.As4(), outs[0].group.As4()
	gMAC := []byte{0x01, 0x00, 0x5e, outG[1] & 0x7f, outG[2], outG[3]}
	var p asm.Instructions
	emit := func(ins ...asm.Instruction) { p = append(p, ins...) }
	// call emits a helper call with up to four arguments after skb (R6).
	call := func(fn asm.BuiltinFunc, args ...asm.Instruction) {
		emit(asm.Mov.Reg(asm.R1, asm.R6))
		emit(args...)
		emit(fn.Call())
	}
	// store writes n ≤ 8 bytes b at packet offset off through the stack.
	store := func(off int32, b []byte) {
		var w [8]byte
		copy(w[:], b)
		emit(asm.StoreImm(asm.RFP, stackTmp, int64(int32(binary.NativeEndian.Uint32(w[:4]))), asm.Word),
			asm.StoreImm(asm.RFP, stackTmp+4, int64(int32(binary.NativeEndian.Uint32(w[4:]))), asm.Word))
		call(asm.FnSkbStoreBytes, asm.Mov.Imm(asm.R2, off), asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, stackTmp), asm.Mov.Imm(asm.R4, int32(len(b))), asm.Mov.Imm(asm.R5, 0))
	}

	emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, skbProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, int32(raw16(be16(unix.ETH_P_IP))), "pass"),
	)
	call(asm.FnSkbLoadBytes, asm.Mov.Imm(asm.R2, ipOff), asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackHdr), asm.Mov.Imm(asm.R4, 20))
	emit(
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr, asm.Byte),
		asm.JNE.Imm(asm.R2, 0x45, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+6, asm.Half),
		asm.And.Imm(asm.R2, int32(raw16(be16(0x3fff)))),
		asm.JNE.Imm(asm.R2, 0, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+9, asm.Byte),
		asm.JNE.Imm(asm.R2, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackHdr+16, asm.Word),
		asm.LoadImm(asm.R3, raw32(inG[:]), asm.DWord),
		asm.JNE.Reg(asm.R2, asm.R3, "pass"),
	)
	call(asm.FnSkbLoadBytes, asm.Mov.Imm(asm.R2, udpDport), asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackPort), asm.Mov.Imm(asm.R4, 2))
	emit(
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R2, asm.RFP, stackPort, asm.Half),
		asm.JNE.Imm(asm.R2, int32(raw16(be16(port))), "pass"),
	)

	// Destination address: UDP checksum (pseudo-header), IP checksum, field.
	call(asm.FnL4CsumReplace, asm.Mov.Imm(asm.R2, udpCsum), asm.LoadImm(asm.R3, raw32(inG[:]), asm.DWord),
		asm.LoadImm(asm.R4, raw32(outG[:]), asm.DWord), asm.Mov.Imm(asm.R5, fPseudoHdr|fMarkMangled0|4))
	call(asm.FnL3CsumReplace, asm.Mov.Imm(asm.R2, ipCsum), asm.LoadImm(asm.R3, raw32(inG[:]), asm.DWord),
		asm.LoadImm(asm.R4, raw32(outG[:]), asm.DWord), asm.Mov.Imm(asm.R5, 4))
	store(ipDaddr, outG[:])
	// Destination port.
	call(asm.FnL4CsumReplace, asm.Mov.Imm(asm.R2, udpCsum), asm.Mov.Imm(asm.R3, int32(raw16(be16(port)))),
		asm.Mov.Imm(asm.R4, int32(raw16(be16(outs[0].port)))), asm.Mov.Imm(asm.R5, fMarkMangled0|2))
	store(udpDport, be16(outs[0].port))
	// TTL, in the 16-bit word it shares with the protocol.
	ttlWord := raw16([]byte{ttl, unix.IPPROTO_UDP})
	call(asm.FnL3CsumReplace, asm.Mov.Imm(asm.R2, ipCsum), asm.LoadMem(asm.R3, asm.RFP, stackHdr+8, asm.Half),
		asm.Mov.Imm(asm.R4, int32(ttlWord)), asm.Mov.Imm(asm.R5, 2))
	store(ipTTL, []byte{ttl, unix.IPPROTO_UDP})
	store(ethDst, gMAC)

	// Count, then a copy out of every output, the last one by redirect.
	emit(asm.StoreImm(asm.RFP, stackZero, 0, asm.Word))
	ins := asm.LoadMapPtr(asm.R1, 0)
	if err := ins.AssociateMap(counter); err != nil {
		return nil, err
	}
	emit(ins, asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, stackZero), asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "send"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
	)
	for i, o := range outs {
		start := len(p)
		store(ethSrc, o.mac)
		if i == 0 {
			p[start] = p[start].WithSymbol("send")
		}
		if i < len(outs)-1 {
			call(asm.FnCloneRedirect, asm.Mov.Imm(asm.R2, int32(o.ifindex)), asm.Mov.Imm(asm.R3, 0))
			continue
		}
		emit(asm.Mov.Imm(asm.R1, int32(o.ifindex)), asm.Mov.Imm(asm.R2, 0), asm.FnRedirect.Call(), asm.Return())
	}
	emit(asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"), asm.Return())
	return p, nil
}
