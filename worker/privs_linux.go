package worker

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"

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
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("list threads: %v", err)
	}
	for _, path := range tasks {
		st, err := readStatus(path)
		if err != nil {
			return err
		}
		if err := unprivilegedProblem(st, u.Uid, u.Gid); err != nil {
			return fmt.Errorf("thread %s: %w", filepath.Base(filepath.Dir(path)), err)
		}
	}
	return nil
}

// readStatus returns the fields of a /proc status file.
func readStatus(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read thread credentials: %w", err)
	}
	defer f.Close()
	st, err := parseStatus(f)
	if err != nil {
		return nil, fmt.Errorf("read thread credentials: %w", err)
	}
	return st, nil
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
