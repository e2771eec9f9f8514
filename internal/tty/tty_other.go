//go:build !linux

// Package tty tells whether an output is a terminal, so the CLIs can colour,
// redraw and show progress only for people and stay plain for scripts.
package tty

import (
	"io"
	"os"
)

// IsTerminal reports whether w is a character device, the portable
// approximation of isatty(3).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
