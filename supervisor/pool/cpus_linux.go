package pool

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// UsableCPUs returns the CPUs this process may run on, in increasing order:
// its sched_getaffinity(2) mask, which already excludes offline CPUs and
// CPUs outside its cpuset (a container's or systemd's AllowedCPUs). It is
// the default of --cpus and --num-workers.
func UsableCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("get CPU affinity: %w", err)
	}
	var cpus []int
	for c := 0; len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// pinThread restricts the calling OS thread to cpu. The caller must hold
// the thread with runtime.LockOSThread: affinity is per thread
// (sched_setaffinity(2) with pid 0 means the calling thread).
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to CPU %d: %w", cpu, err)
	}
	return nil
}
