// Package tty tells whether an output is a terminal, so the CLIs can colour,
// redraw and show progress only for people and stay plain for scripts.
package tty

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether w is a terminal: a file on which the TCGETS
// ioctl succeeds, as isatty(3) checks.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
