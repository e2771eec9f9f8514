package supervisor

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestControlSocketAppearsWithItsMode starts the control socket many times
// under umask 0 (with which a socket is bound mode 0777) and watches its
// directory with inotify: the socket's name is only ever created and
// removed, never changed after it appeared (no IN_ATTRIB: no chmod or
// chown at the final path), and each time it has mode 0660 once there. A
// socket bound at its path and then chmod'ed would show IN_ATTRIB, and
// anyone could connect in between.
func TestControlSocketAppearsWithItsMode(t *testing.T) {
	dir := umaskZeroDir(t, "mcrmode")
	path := filepath.Join(dir, "ctl.sock")
	ino, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ino)
	if _, err := unix.InotifyAddWatch(ino, dir, unix.IN_CREATE|unix.IN_ATTRIB|unix.IN_MOVED_TO|unix.IN_DELETE); err != nil {
		t.Fatal(err)
	}
	const starts = 20
	for i := range starts {
		ln, err := listenControl(path, "", testLogger(nil))
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode() != fs.ModeSocket|0o660 {
			t.Errorf("start %d: socket %v, %v; want mode %v", i, fi.Mode(), err, fs.ModeSocket|0o660)
		}
		ln.Close()
	}
	var got []string
	for _, ev := range readInotify(t, ino) {
		if ev.name == filepath.Base(path) {
			got = append(got, ev.what)
		}
	}
	var want []string
	for range starts {
		want = append(want, "IN_CREATE", "IN_DELETE")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("inotify events on %s (-want +got):\n%s", filepath.Base(path), diff)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("directory holds %v after every listener closed, want nothing (no private directory left)", entries)
	}
}

// umaskZeroDir sets the umask to 0 until the test ends (a socket is then
// bound with mode 0777) and returns a new directory, mode 0755, whose name
// starts with prefix.
func umaskZeroDir(t *testing.T, prefix string) string {
	t.Helper()
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type inotifyEvent struct{ name, what string }

// readInotify returns the events queued on the inotify fd ino.
func readInotify(t *testing.T, ino int) []inotifyEvent {
	t.Helper()
	names := map[uint32]string{unix.IN_CREATE: "IN_CREATE", unix.IN_ATTRIB: "IN_ATTRIB",
		unix.IN_MOVED_TO: "IN_MOVED_TO", unix.IN_DELETE: "IN_DELETE"}
	var events []inotifyEvent
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(ino, buf)
		if err == unix.EAGAIN {
			return events
		}
		if err != nil {
			t.Fatalf("read inotify: %v", err)
		}
		for off := 0; off < n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			what, ok := names[ev.Mask&^unix.IN_ISDIR]
			if !ok {
				what = fmt.Sprintf("%#x", ev.Mask)
			}
			events = append(events, inotifyEvent{name: string(bytes.TrimRight(name, "\x00")), what: what})
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}
