package relaysock

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Fanout is how the kernel spreads the packets of an input over the
// members of its PACKET_FANOUT group, one member per worker slot. The
// zero value is invalid: every group is opened in a mode someone chose.
type Fanout uint8

const (
	// FanoutHash hands a packet to the member picked by a hash of its
	// flow (PACKET_FANOUT_HASH): the kernel's symmetric flow hash of the
	// addresses, the IP protocol and the ports, computed from the headers
	// (not the NIC's RSS hash), after IPv4 reassembly (FLAG_DEFRAG). Every
	// datagram of a flow reaches the same worker whichever CPU received
	// it, so the relay never reorders a flow; one flow is relayed by one
	// worker at most.
	FanoutHash Fanout = iota + 1
	// FanoutCPU hands a packet to the member of the worker pinned to the
	// CPU that received it (PACKET_FANOUT_CBPF running CPUProgram), so a
	// packet is relayed on the core whose softirq handled it. A flow whose
	// packets arrive on several CPUs (veth, tun, a NIC without per-flow
	// receive steering) is split over workers and may leave reordered.
	FanoutCPU
)

// ParseFanout returns the mode named s: "hash" or "cpu".
func ParseFanout(s string) (Fanout, error) {
	switch s {
	case "hash":
		return FanoutHash, nil
	case "cpu":
		return FanoutCPU, nil
	}
	return 0, fmt.Errorf("fanout mode %q: want hash or cpu", s)
}

func (f Fanout) String() string {
	switch f {
	case FanoutHash:
		return "hash"
	case FanoutCPU:
		return "cpu"
	}
	return fmt.Sprintf("Fanout(%d)", uint8(f))
}

// CPUProgram returns the classic BPF program of a FanoutCPU group whose
// member i belongs to the worker pinned to cores[i]: it returns the index
// of the first member pinned to the CPU the packet was received on
// (ancillary load SKF_AD_CPU), and for a CPU no worker is pinned to the
// CPU number itself, which the kernel takes modulo the members, as
// PACKET_FANOUT_CPU would. The kernel's own PACKET_FANOUT_CPU picks member
// CPU % members by join order, which misses whenever the cores are not
// 0..n-1 in slot order (--cpus 2,3 or 1,0).
//
// It compares the CPU with each pinned core in turn: two instructions per
// distinct core, so the cost grows with the cores the workers use, not
// with the machine's.
func CPUProgram(cores []int) ([]bpf.RawInstruction, error) {
	prog := []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtCPUID}}
	seen := map[int]bool{}
	for i, c := range cores {
		if c < 0 || seen[c] {
			continue
		}
		seen[c] = true
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(c), SkipTrue: 0, SkipFalse: 1},
			bpf.RetConstant{Val: uint32(i)})
	}
	prog = append(prog, bpf.RetA{})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble the CPU fanout program for cores %v: %w", cores, err)
	}
	return raw, nil
}
