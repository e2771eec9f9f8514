package worker

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pin binds the calling thread, which runs the event loop, to CPU core, and
// then every other thread of the process: affinity is per thread
// (sched_setaffinity(2) with pid 0 is the caller), and threads the runtime
// starts later inherit the mask of the thread that creates them. Only the
// first step must succeed.
func pin(core int) error {
	var set unix.CPUSet
	set.Set(core)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin event loop to CPU %d: %w", core, err)
	}
	tids, err := threadIDs()
	if err != nil {
		return nil
	}
	for _, tid := range tids {
		// A thread may exit meanwhile (ESRCH); it needs no pinning then.
		_ = unix.SchedSetaffinity(tid, &set)
	}
	return nil
}

// threadIDs lists the process's threads from /proc/self/task.
func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
