//go:build !linux

package uring

import "fmt"

// Ring is an io_uring instance. io_uring exists only on Linux; on this
// system New always fails.
type Ring struct{}

// New returns ErrUnavailable: io_uring exists only on Linux.
func New(cfg *Config) (*Ring, error) {
	return nil, fmt.Errorf("%w: not Linux", ErrUnavailable)
}
