package pool

import (
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		name, in string
		want     []int
		wantErr  string
	}{
		{name: "single", in: "3", want: []int{3}},
		{name: "range", in: "0-3", want: []int{0, 1, 2, 3}},
		{name: "ranges and singles", in: "0-3,8", want: []int{0, 1, 2, 3, 8}},
		{name: "order kept", in: "8,0-1", want: []int{8, 0, 1}},
		{name: "one-cpu range", in: "5-5", want: []int{5}},
		{name: "spaces", in: " 0 - 1 , 4 ", want: []int{0, 1, 4}},
		{name: "empty", in: "", wantErr: `parse CPU list "": empty`},
		{name: "blank", in: "  ", wantErr: `parse CPU list "  ": empty`},
		{name: "open range", in: "0-", wantErr: `parse CPU list "0-": "0-": missing CPU number`},
		{name: "no start", in: "-3", wantErr: `parse CPU list "-3": "-3": missing CPU number`},
		{name: "reversed range", in: "3-1", wantErr: `parse CPU list "3-1": range "3-1" ends before it starts`},
		{name: "not a number", in: "x", wantErr: `parse CPU list "x": "x": "x" is not a CPU number`},
		{name: "negative", in: "0,-1", wantErr: `parse CPU list "0,-1": "-1": missing CPU number`},
		{name: "empty item", in: "0,,1", wantErr: `parse CPU list "0,,1": empty item`},
		{name: "trailing comma", in: "0,", wantErr: `parse CPU list "0,": empty item`},
		{name: "duplicate", in: "1,1", wantErr: `parse CPU list "1,1": CPU 1 listed twice`},
		{name: "overlapping ranges", in: "0-3,2-5", wantErr: `parse CPU list "0-3,2-5": CPU 2 listed twice`},
		{name: "too large", in: "0-100000", wantErr: `parse CPU list "0-100000": "0-100000": CPU 100000 is above 8191`},
		{name: "double range", in: "1-2-3", wantErr: `parse CPU list "1-2-3": "1-2-3": "2-3" is not a CPU number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCPUList(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseCPUList(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCPUList(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCPUList(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestUsableCPUs(t *testing.T) {
	cpus, err := UsableCPUs()
	if err != nil {
		t.Fatal(err)
	}
	// The Go runtime sizes GOMAXPROCS from the same affinity mask.
	if len(cpus) != runtime.NumCPU() {
		t.Fatalf("UsableCPUs = %v, runtime.NumCPU = %d", cpus, runtime.NumCPU())
	}
	for i := 1; i < len(cpus); i++ {
		if cpus[i] <= cpus[i-1] {
			t.Fatalf("UsableCPUs = %v, not increasing", cpus)
		}
	}
}
