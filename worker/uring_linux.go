package worker

import (
	"fmt"

	"github.com/mcrelay/mcr/worker/uring"
)

// uringBackend will run the loop on one io_uring; until it lands, asking
// for it fails and auto falls back to mmsg.
type uringBackend struct {
	*mmsgBackend
	ring *uring.Ring
}

func newUring(w *worker) (*uringBackend, error) {
	return nil, fmt.Errorf("%w: the uring backend is not in this build yet", uring.ErrUnavailable)
}
