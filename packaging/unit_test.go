package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitVerifies runs `systemd-analyze verify` on mcrd.service. verify
// insists that ExecStart's binary exists, so the test points it at an
// executable of its own; everything else is checked as installed.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile("mcrd.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/mcrd"
	if !strings.Contains(string(unit), "ExecStart="+bin+" ") {
		t.Fatalf("mcrd.service: ExecStart does not start %s, which make install rewrites", bin)
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "mcrd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mcrd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), bin, fake)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify mcrd.service: %v\n%s", err, out)
	}
}
