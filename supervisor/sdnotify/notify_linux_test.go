package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeNotifySocket listens where systemd would (a unixgram socket named by
// NOTIFY_SOCKET) and returns a function that reads the next message.
func fakeNotifySocket(t *testing.T) (next func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notification: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifySendsStates(t *testing.T) {
	next := fakeNotifySocket(t)
	for _, tc := range []struct {
		name   string
		notify func() error
		want   string
	}{
		{"ready", Ready, "READY=1"},
		{"watchdog", Watchdog, "WATCHDOG=1"},
		{"stopping", Stopping, "STOPPING=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.notify(); err != nil {
				t.Fatal(err)
			}
			if got := next(); got != tc.want {
				t.Errorf("message %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotifyReloadingCarriesMonotonicTime(t *testing.T) {
	next := fakeNotifySocket(t)
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(next(), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("message lines %q, want RELOADING=1 and MONOTONIC_USEC=…", lines)
	}
	if usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || usec == 0 {
		t.Errorf("MONOTONIC_USEC %q is not a positive integer", lines[1])
	}
}

func TestNotifyWithoutSystemdIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for name, notify := range map[string]func() error{
		"ready": Ready, "reloading": Reloading, "stopping": Stopping, "watchdog": Watchdog,
	} {
		if err := notify(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v, want nil", name, err)
		}
	}
}

func TestNotifyReportsUnreachableSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	err := Ready()
	if err == nil || !strings.HasPrefix(err.Error(), `notify systemd "READY=1": `) {
		t.Errorf("Ready to a missing socket: %v, want an error naming READY=1", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	type result struct {
		Interval time.Duration
		On       bool
	}
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            result
	}{
		{"off", "", "", result{}},
		{"on for us", "5000000", self, result{5 * time.Second, true}},
		{"on without pid", "2000000", "", result{2 * time.Second, true}},
		{"meant for our parent", "5000000", strconv.Itoa(os.Getppid()), result{}},
		{"malformed", "soon", self, result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			var got result
			got.Interval, got.On = WatchdogInterval()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("WatchdogInterval (-want +got):\n%s", diff)
			}
		})
	}
}
