package worker

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// mapPool maps n packet buffers of slotSize bytes outside the Go heap, so
// the kernel may write them while no system call is running (io_uring) and
// the garbage collector never moves or frees them. Unlike uring.Mmap it
// does not pre-fault: a slot costs only the pages packets touch.
func mapPool(n int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, n*slotSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map %d packet buffers: %w", n, err)
	}
	return mem, nil
}

func unmapPool(mem []byte) { _ = unix.Munmap(mem) }
