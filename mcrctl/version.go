package mcrctl

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/buildinfo"
)

// Version is the build version `mcrctl version` reports, set at link time
// like mcrd's (`make build` stamps both with packaging/version.sh):
// go build -ldflags "-X github.com/mcrelay/mcr/mcrctl.Version=1.2.0".
// "" = the module version Go recorded, or "(devel)" (package buildinfo).
var Version = ""

// clientVersion describes this binary: Version (or the module version of
// its build info), VCS commit (with "-dirty" for a modified tree), Go
// version and protocol.
func clientVersion() string {
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(12, len(s.Value))]
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit != "" {
			commit += "-dirty"
		}
	}
	return versionLine("mcrctl", buildinfo.Version(Version), commit, runtime.Version(), controlproto.ProtocolVersion)
}

func daemonVersion(v controlproto.VersionResult) string {
	return versionLine("mcrd", v.Version, v.Commit, v.Go, v.Protocol)
}

// versionLine prints one line of `mcrctl version`:
// "mcrd    1.0.0  commit 0123456789ab  go1.26.8  protocol 1".
func versionLine(name, version, commit, goVersion string, protocol int) string {
	parts := []string{fmt.Sprintf("%-7s %s", name, version)}
	if commit != "" {
		parts = append(parts, "commit "+commit)
	}
	parts = append(parts, goVersion, fmt.Sprintf("protocol %d", protocol))
	return strings.Join(parts, "  ")
}
