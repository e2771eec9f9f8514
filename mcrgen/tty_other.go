//go:build !linux

package mcrgen

import (
	"io"
	"os"
)

// isTerminal reports whether w is a character device, the portable
// approximation of isatty(3).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
