package worker

import (
	"strings"
	"testing"
)

// nobodyStatus is /proc/self/status of a fully unprivileged worker thread
// of uid and gid 65534, in part.
const nobodyStatus = `Name:	mcrd
Umask:	0022
State:	R (running)
Uid:	65534	65534	65534	65534
Gid:	65534	65534	65534	65534
FDSize:	64
Groups:	
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000
CapAmb:	0000000000000000
NoNewPrivs:	1
Seccomp:	0
`

func TestUnprivilegedProblem(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string // in nobodyStatus
		want    string
	}{
		{name: "unprivileged"},
		{name: "saved uid root", replace: [2]string{"Uid:	65534	65534	65534	65534", "Uid:	65534	65534	0	65534"},
			want: `Uid is "65534\t65534\t0\t65534", want "65534\t65534\t65534\t65534"`},
		{name: "other gid", replace: [2]string{"Gid:	65534	65534	65534	65534", "Gid:	100	100	100	100"},
			want: `Gid is "100\t100\t100\t100", want "65534\t65534\t65534\t65534"`},
		{name: "supplementary group", replace: [2]string{"Groups:	", "Groups:	27"},
			want: `Groups is "27", want ""`},
		{name: "CAP_NET_RAW in the bounding set", replace: [2]string{"CapBnd:	0000000000000000", "CapBnd:	0000000000002000"},
			want: `CapBnd is "0000000000002000", want "0000000000000000"`},
		{name: "ambient capability", replace: [2]string{"CapAmb:	0000000000000000", "CapAmb:	0000000000001000"},
			want: `CapAmb is "0000000000001000", want "0000000000000000"`},
		{name: "no_new_privs unset", replace: [2]string{"NoNewPrivs:	1", "NoNewPrivs:	0"},
			want: `NoNewPrivs is "0", want "1"`},
		{name: "field missing", replace: [2]string{"NoNewPrivs:	1\n", ""},
			want: `NoNewPrivs is "", want "1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := nobodyStatus
			if tc.replace[0] != "" {
				text = strings.Replace(text, tc.replace[0], tc.replace[1], 1)
			}
			st, err := parseStatus(strings.NewReader(text))
			if err != nil {
				t.Fatal(err)
			}
			err = unprivilegedProblem(st, "65534", "65534")
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("unprivilegedProblem = %q, want %q", got, tc.want)
			}
		})
	}
}
