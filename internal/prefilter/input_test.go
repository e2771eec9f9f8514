package prefilter_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"

	"github.com/mcrelay/mcr/internal/prefilter"
)

func TestAtNetworkHeader(t *testing.T) {
	const netOff = 0xfff00000 // SKF_NET_OFF as a uint32
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},
		bpf.LoadAbsolute{Off: 6, Size: 2},
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 2, Size: 2},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 7},
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.LoadExtension{Num: bpf.ExtVLANTag},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bpf.Instruction{
		bpf.LoadAbsolute{Off: netOff + 9, Size: 1},
		bpf.LoadAbsolute{Off: netOff + 6, Size: 2},
		bpf.LoadMemShift{Off: netOff},
		bpf.LoadIndirect{Off: netOff + 2, Size: 2},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 7},
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.LoadExtension{Num: bpf.ExtVLANTag}, // ancillary: stays
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	}
	got, ok := bpf.Disassemble(prefilter.AtNetworkHeader(prog))
	if !ok {
		t.Fatal("the rewritten program does not disassemble")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rewritten program (-want +got):\n%s", diff)
	}
}

func TestForInput(t *testing.T) {
	prog := prefilter.DropAll()
	if got := prefilter.ForInput(prog, true); len(got) != len(prog) {
		t.Errorf("ForInput with a ring: %d instructions, want the program's %d", len(got), len(prog))
	}
	if got, want := prefilter.ForInput(prog, false), prefilter.DropVLANTagged(prog); !cmp.Equal(got, want) {
		t.Errorf("ForInput without a ring = %v, want the program behind the VLAN guard %v", got, want)
	}
}
