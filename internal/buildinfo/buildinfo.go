// Package buildinfo says which version a binary is when the build did not
// stamp one: `make build` sets each binary's Version variable at link time
// (-ldflags -X), `go build` and `go install` do not.
package buildinfo

import "runtime/debug"

// Version returns stamped when it is set, else the module version Go
// recorded in the binary (v1.2.0 for `go install ...@v1.2.0`), else
// "(devel)".
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
