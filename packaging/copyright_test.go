package packaging

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCopyrightListsModules checks that the packages' copyright file names
// every Go module linked into the three binaries, so that a new dependency
// cannot ship without its licence being stated.
func TestCopyrightListsModules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "../cmd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var linked []string
	for _, m := range strings.Fields(string(out)) {
		if m != "github.com/mcrelay/mcr" {
			linked = append(linked, m)
		}
	}
	slices.Sort(linked)
	linked = slices.Compact(linked)

	b, err := os.ReadFile("copyright")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for line := range strings.Lines(string(b)) {
		// The module lines: indented by one space, a module path, a licence.
		if f := strings.Fields(line); strings.HasPrefix(line, " ") && len(f) >= 2 && strings.Contains(f[0], ".") && strings.Contains(f[0], "/") {
			listed = append(listed, f[0])
		}
	}
	slices.Sort(listed)
	if diff := cmp.Diff(linked, listed); diff != "" {
		t.Errorf("modules in the binaries (-) and in packaging/copyright (+) differ:\n%s", diff)
	}
}
