//go:build !linux

package ingressdrop

// Dropper is the Linux Dropper's stand-in: tcx exists only on Linux, so
// every non-empty Set fails with ErrUnsupported.
type Dropper struct{}

// New returns a Dropper whose Sets fail.
func New() *Dropper { return &Dropper{} }

// Set returns ErrUnsupported for a non-empty set, nil for an empty one
// (nothing to detach).
func (d *Dropper) Set(ifindex int, matches []Match) error {
	if len(matches) == 0 {
		return nil
	}
	return ErrUnsupported
}

// Dropped reports that nothing is attached.
func (d *Dropper) Dropped(ifindex int) (uint64, bool) { return 0, false }

// Close does nothing.
func (d *Dropper) Close() error { return nil }
