package relaysock

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
)

func TestParseFanout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Fanout
		err  string
	}{
		{"hash", FanoutHash, ""},
		{"cpu", FanoutCPU, ""},
		{"CPU", 0, `fanout mode "CPU": want hash or cpu`},
		{"", 0, `fanout mode "": want hash or cpu`},
	} {
		got, err := ParseFanout(tc.in)
		if got != tc.want || errString(err) != tc.err {
			t.Errorf("ParseFanout(%q) = %v, %q; want %v, %q", tc.in, got, errString(err), tc.want, tc.err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

// TestCPUProgram runs the program of each core map for the CPUs 0..5 and
// checks the member each one's packets go to, as the kernel computes it
// (the program's result modulo the members). The test VM has no ancillary
// loads, so the CPU is loaded as a constant in place of the first
// instruction, the load of SKF_AD_CPU.
func TestCPUProgram(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cores []int
		want  []int // member of CPU 0..5
	}{
		{"cores 0 and 1: the kernel's own mapping", []int{0, 1}, []int{0, 1, 0, 1, 0, 1}},
		{"cores in reverse", []int{1, 0}, []int{1, 0, 0, 1, 0, 1}},
		{"cores 2 and 3 (--cpus 2,3)", []int{2, 3}, []int{0, 1, 0, 1, 0, 1}},
		{"cores 1 and 3 (--cpus 1,3)", []int{1, 3}, []int{0, 0, 0, 1, 0, 1}},
		{"more workers than cores: the first of a core's", []int{4, 5, 4, 5}, []int{0, 1, 2, 3, 0, 1}},
		{"one worker", []int{3}, []int{0, 0, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := CPUProgram(tc.cores)
			if err != nil {
				t.Fatal(err)
			}
			prog, ok := bpf.Disassemble(raw)
			if !ok {
				t.Fatalf("program does not disassemble: %v", prog)
			}
			if prog[0] != (bpf.LoadExtension{Num: bpf.ExtCPUID}) {
				t.Fatalf("first instruction %v, want the load of the CPU", prog[0])
			}
			var got []int
			for cpu := range len(tc.want) {
				prog[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(cpu)}
				vm, err := bpf.NewVM(prog)
				if err != nil {
					t.Fatal(err)
				}
				ret, err := vm.Run(nil)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ret%len(tc.cores))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("member of CPU 0..%d (-want +got):\n%s", len(tc.want)-1, diff)
			}
		})
	}
}
