package worker

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// unprivilegedProblem returns the first field of a thread's /proc status
// that shows a privilege a worker of account uid, gid must not have: any
// other real, effective, saved or filesystem id, a supplementary group, a
// capability in any set, or no_new_privs unset. It returns nil when there
// is none.
func unprivilegedProblem(status map[string]string, uid, gid string) error {
	ids := func(id string) string { return strings.Repeat(id+"\t", 3) + id }
	const none = "0000000000000000"
	want := []struct{ field, value string }{
		{"Uid", ids(uid)},
		{"Gid", ids(gid)},
		{"Groups", ""},
		{"CapInh", none},
		{"CapPrm", none},
		{"CapEff", none},
		{"CapBnd", none},
		{"CapAmb", none},
		{"NoNewPrivs", "1"},
	}
	for _, w := range want {
		if status[w.field] != w.value {
			return fmt.Errorf("%s is %q, want %q", w.field, status[w.field], w.value)
		}
	}
	return nil
}

// parseStatus returns the fields of a /proc status file.
func parseStatus(r io.Reader) (map[string]string, error) {
	got := make(map[string]string)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	return got, sc.Err()
}
