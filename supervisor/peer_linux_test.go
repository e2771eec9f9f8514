package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	ln, err := listenControl(path, "nogroup", log)
	if err != nil {
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

// connectLoopEnv, when set in the environment, makes this test binary a
// client that becomes uid and gid nobody, then connects to the socket at
// the variable's value over and over until its stdin closes, and prints
// "attempts connected refused" (refused: EACCES, the socket was there but
// not for it).
const connectLoopEnv = "MCR_TEST_CONNECT_LOOP"

func init() {
	if path := os.Getenv(connectLoopEnv); path != "" {
		os.Exit(connectLoop(path))
	}
}

func connectLoop(path string) int {
	const nobody = 65534
	for _, step := range []func() error{
		func() error { return syscall.Setgroups(nil) },
		func() error { return syscall.Setgid(nobody) },
		func() error { return syscall.Setuid(nobody) },
	} {
		if err := step(); err != nil {
			fmt.Fprintln(os.Stderr, "become nobody:", err)
			return 1
		}
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	fmt.Println("ready")
	var attempts, connected, refused int
	for {
		select {
		case <-stop:
			fmt.Println(attempts, connected, refused)
			return 0
		default:
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socket:", err)
			return 1
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		unix.Close(fd)
		attempts++
		switch {
		case err == nil:
			connected++
		case errors.Is(err, unix.EACCES):
			refused++
		}
	}
}

// TestControlSocketNeverOpenToOthers starts the control socket over and over
// under umask 0 while a process running as nobody (not root, not in the
// socket's group) tries to connect as fast as it can: it never gets in,
// not even in the moment between the socket's creation and its final mode.
func TestControlSocketNeverOpenToOthers(t *testing.T) {
	netnstest.RequireRoot(t)
	// Mode 0755: nobody may reach the socket; only its own mode decides.
	path := filepath.Join(umaskZeroDir(t, "mcrrace"), "ctl.sock")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe)
	child.Env = append(os.Environ(), connectLoopEnv+"="+path)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncbuf.Buffer
	child.Stdout, child.Stderr = &stdout, &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	netnstest.Poll(t, 10*time.Second, 10*time.Millisecond, "the client to run as nobody", func() bool {
		return strings.HasPrefix(stdout.String(), "ready\n") || stderr.String() != ""
	})
	if stderr.String() != "" {
		t.Fatalf("client: %s", stderr.String())
	}
	const starts = 100
	for i := range starts {
		ln, err := listenControl(path, "", testLogger(nil))
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		time.Sleep(time.Millisecond) // the client's tries find the socket in place too
		ln.Close()
	}
	stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("client: %v: %s", err, stderr.String())
	}
	var attempts, connected, refused int
	if _, err := fmt.Sscan(strings.TrimPrefix(stdout.String(), "ready\n"), &attempts, &connected, &refused); err != nil {
		t.Fatalf("client output %q: %v", stdout.String(), err)
	}
	t.Logf("%d starts: the client as nobody tried %d connects, %d refused with EACCES", starts, attempts, refused)
	if connected != 0 {
		t.Errorf("a process as nobody connected %d times to a control socket of mode 0660 owned by root", connected)
	}
	if refused == 0 {
		t.Errorf("the client never found the socket in place (%d attempts): the test proves nothing", attempts)
	}
}
