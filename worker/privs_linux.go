package worker

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// probeEnv, set to 1 in a worker's environment by a test, makes the worker
// try to open an AF_PACKET socket once it checked its privileges and log
// the outcome, which proves from inside the worker that it cannot.
const probeEnv = "MCR_TEST_PRIVILEGE_PROBE"

// checkUnprivileged verifies that every thread of the process runs as
// account name, with its primary group and no other, with no capability in
// any set and with no_new_privs: what the supervisor starts a worker with
// (it switches the child before execve, so that no thread of the worker
// ever runs privileged; dropping inside a Go process cannot reach every
// thread). It returns what is wrong, and the worker then refuses to run.
func checkUnprivileged(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("worker user: %w", err)
	}
	want := map[string]string{
		"Uid":        strings.Repeat(u.Uid+"\t", 3) + u.Uid,
		"Gid":        strings.Repeat(u.Gid+"\t", 3) + u.Gid,
		"Groups":     "",
		"CapInh":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapEff":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
	}
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("list threads: %v", err)
	}
	for _, path := range tasks {
		got, err := readStatus(path, want)
		if err != nil {
			return err
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("thread %s: %s is %q, want %q", filepath.Base(filepath.Dir(path)), k, got[k], v)
			}
		}
	}
	return nil
}

// readStatus returns the fields of a /proc status file named in keys.
func readStatus(path string, keys map[string]string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read thread credentials: %w", err)
	}
	defer f.Close()
	got := make(map[string]string, len(keys))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if _, want := keys[k]; ok && want {
			got[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read thread credentials: %w", err)
	}
	return got, nil
}

// probeRawSocket tries to open the AF_PACKET socket a compromised worker
// would want and returns the error that stopped it (nil: it could).
func probeRawSocket() error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}
