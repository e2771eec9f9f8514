package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
)

// TestControlSocketAccess runs mcrctl as uid 65534 against a control
// socket given to group nogroup (65534) by --socket-group: as a member of
// the group it connects, and its mutating request is logged with its
// credentials; outside the group (and not root) it is refused.
func TestControlSocketAccess(t *testing.T) {
	netnstest.RequireRoot(t)
	dir, err := os.MkdirTemp("", "mcrsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Anyone may reach the socket: only its own owner, group and mode decide.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ctl.sock")
	var logs syncbuf.Buffer
	log := testLogger(&logs)
	ln, err := listenControl(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := setSocketGroup(path, "nogroup"); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := newServer(ln, func(req controlproto.Request) (controlproto.Response, durability) {
		return controlproto.OK(controlproto.LogLevelResult{Level: req.Level}), nil
	}, log)
	srv.start()
	t.Cleanup(srv.close)
	mcrctl := testbin.Path(t, "mcrctl")

	const nobody, nogroup = 65534, 65534
	tests := []struct {
		name    string
		gid     uint32
		args    []string
		wantOut string // the start of the output
	}{
		{name: "member of the socket group", gid: nogroup, args: []string{"log-level", "set", "warn"},
			wantOut: "log level set to warn"},
		{name: "neither root nor in the group", gid: nogroup - 1, args: []string{"ping"},
			wantOut: "mcrctl: cannot reach mcrd: permission denied on " + path},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(mcrctl, append([]string{"--socket", path}, tc.args...)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: tc.gid, Groups: []uint32{}}}
			out, _ := cmd.CombinedOutput()
			if !strings.HasPrefix(string(out), tc.wantOut) {
				t.Errorf("mcrctl %s as uid %d gid %d: %q, want it to start with %q",
					strings.Join(tc.args, " "), nobody, tc.gid, out, tc.wantOut)
			}
		})
	}
	if !strings.Contains(logs.String(), `msg="control request" command=SetLogLevel peer_pid=`) ||
		!strings.Contains(logs.String(), "peer_uid=65534 peer_gid=65534") {
		t.Errorf("no log of the SetLogLevel request with its peer's credentials in:\n%s", logs.String())
	}
}
