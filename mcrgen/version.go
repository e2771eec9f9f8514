package mcrgen

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/internal/buildinfo"
)

// Version is the build version `mcrgen version` reports, set at link time
// like mcrd's and mcrctl's (`make build` stamps all three):
// go build -ldflags "-X github.com/mcrelay/mcr/mcrgen.Version=1.2.0".
// "" = the module version Go recorded, or "(devel)" (package buildinfo).
var Version = ""

func versionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "mcrgen %s  %s\n", buildinfo.Version(Version), runtime.Version())
			return err
		},
	}
}
