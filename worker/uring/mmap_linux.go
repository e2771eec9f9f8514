package uring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Mmap returns size bytes of zeroed, pre-faulted private anonymous memory
// (MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE). It lies outside the Go heap, so
// the garbage collector never moves or frees it: use it for packet buffers,
// msghdr/iovec/sockaddr arrays and anything else whose address goes into an
// SQE. Release it with Munmap.
func Mmap(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return b, nil
}

// Munmap releases memory from Mmap. b must start where Mmap's slice started
// and keep its capacity. No operation may still be using it.
func Munmap(b []byte) error {
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("munmap %d bytes: %w", cap(b), err)
	}
	return nil
}
