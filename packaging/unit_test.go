package packaging

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/mcrctl"
)

// installedBin is the path of mcrd in the units, which make install
// rewrites to $(PREFIX)/bin/mcrd.
const installedBin = "/usr/local/bin/mcrd"

// TestUnitVerifies runs `systemd-analyze verify` on mcrd.service and on an
// instance of mcrd@.service. verify insists that ExecStart's binary exists,
// so the test points it at an executable of its own; everything else is
// checked as installed.
func TestUnitVerifies(t *testing.T) {
	analyze := requireAnalyze(t)
	dir := unitDir(t)
	for _, unit := range []string{"mcrd.service", "mcrd@blue.service"} {
		out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, unit)).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestTemplateAsHardened checks that mcrd@.service is mcrd.service but for
// what a relay in a namespace must change: the same directives with the
// same values, and the same verdict of `systemd-analyze security` on every
// one of its checks (capabilities, system calls, sandbox).
func TestTemplateAsHardened(t *testing.T) {
	plain, tmpl := readUnit(t, "mcrd.service"), readUnit(t, "mcrd@.service")
	want := map[string][]string{}
	for k, v := range plain {
		want[k] = v
	}
	// The differences, each for a reason the template's comments give.
	want["Unit.Description"] = []string{"mcr multicast relay in network namespace %i"}
	want["Service.NetworkNamespacePath"] = []string{"/run/netns/%i"}
	want["Service.ExecStart"] = []string{strings.NewReplacer(
		"/etc/mcr/mcr.json", "/etc/mcr/%i.json",
		mcrctl.DefaultSocket, mcrctl.NetnsSocket("%i"),
	).Replace(plain["Service.ExecStart"][0])}
	want["Service.RuntimeDirectory"] = []string{"mcr/netns/%i"}
	delete(want, "Service.RuntimeDirectoryPreserve")
	if diff := cmp.Diff(want, tmpl); diff != "" {
		t.Errorf("mcrd@.service differs from mcrd.service beyond the namespace, config and socket (-want +got):\n%s", diff)
	}
	if got, want := plain["Service.ExecStart"][0], installedBin+" supervisor --config /etc/mcr/mcr.json --control-socket "+
		mcrctl.DefaultSocket+" --worker-user "+workerAccount(t); got != want {
		t.Errorf("mcrd.service: ExecStart=%s, want %s (make install rewrites the binary's path; mcrctl's default socket; the sysusers.d account)",
			got, want)
	}

	analyze := requireAnalyze(t)
	dir := unitDir(t)
	security := func(unit string) any {
		t.Helper()
		out, err := exec.Command(analyze, "security", "--offline=yes", "--json=short", "--no-pager",
			filepath.Join(dir, unit)).Output()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v", unit, err)
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
		}
		return v
	}
	if diff := cmp.Diff(security("mcrd.service"), security("mcrd@blue.service")); diff != "" {
		t.Errorf("systemd-analyze security: mcrd@blue.service is assessed unlike mcrd.service (-plain +template):\n%s", diff)
	}
}

// workerAccount is the account sysusers.conf creates.
func workerAccount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "u" {
			return f[1]
		}
	}
	t.Fatal("sysusers.conf creates no account")
	return ""
}

// readUnit reads a unit file into "Section.Key" → values, in order.
func readUnit(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string][]string{}
	section := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a directive: %q", name, line)
			}
			unit[section+"."+k] = append(unit[section+"."+k], v)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func requireAnalyze(t *testing.T) string {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze not installed (apt-get install systemd)")
	}
	return analyze
}

// unitDir returns a directory with both units, their mcrd replaced by an
// executable of the test's, and mcrd@blue.service, an instance of the
// template as `systemctl enable mcrd@blue` makes it.
func unitDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	fake := filepath.Join(dir, "mcrd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"mcrd.service", "mcrd@.service"} {
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart="+installedBin+" ") {
			t.Fatalf("%s: ExecStart does not start %s, which make install rewrites", unit, installedBin)
		}
		if err := os.WriteFile(filepath.Join(dir, unit), []byte(strings.ReplaceAll(string(b), installedBin, fake)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("mcrd@.service", filepath.Join(dir, "mcrd@blue.service")); err != nil {
		t.Fatal(err)
	}
	return dir
}
