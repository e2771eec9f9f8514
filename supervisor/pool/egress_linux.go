package pool

import (
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// kernelEgressOps are the real steps of heldEgress.
func kernelEgressOps() EgressOps {
	return EgressOps{
		Open: relaysock.OpenEgress,
		Port: relaysock.BoundPort,
		Dup: func(fd int) (int, error) {
			return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		},
		Close: func(fd int) { unix.Close(fd) },
	}
}
