// Package testbin builds mcr's binaries once per test process so that
// integration tests can run the real mcrd, mcrctl and mcrgen.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[string]string{}
)

// Path returns the path of cmd/NAME built for this test process, building
// it on first use. The binaries live in a temporary directory, which Main
// removes after the tests.
func Path(t testing.TB, name string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "mcr-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		// mcrd starts its workers as an unprivileged user, who must
		// be able to execute the binary.
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("find module root: %v", err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

// Main is the TestMain of a package whose tests build binaries: it runs
// the tests, removes the binaries and exits with the tests' status.
//
//	func TestMain(m *testing.M) { testbin.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup removes the built binaries; Main calls it after the tests.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
		built = map[string]string{}
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
