package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVersionScript runs version.sh in a throwaway repository through the
// life of a project: no tag (a shallow CI clone), a release, commits after
// it, a release candidate, a modified tree. Each version must be what the
// script promises and, since packages carry it, sort after the one before
// as dpkg sorts versions (RPM sorts ~ and + the same way).
func TestVersionScript(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("skipping: git not installed")
	}
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org",
			"GIT_COMMITTER_DATE=2025-01-07T12:00:00Z", "GIT_AUTHOR_DATE=2025-01-07T12:00:00Z")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	version := func() string {
		t.Helper()
		out, err := exec.Command(script, dir).Output()
		if err != nil {
			t.Fatalf("version.sh: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func() string {
		t.Helper()
		git("commit", "--allow-empty", "-q", "-m", "change")
		return git("rev-parse", "--short=8", "HEAD")
	}

	if got, want := strings.TrimSpace(mustOutput(t, script, t.TempDir())), "0.0.0~unknown"; got != want {
		t.Errorf("outside git: %q, want %q", got, want)
	}
	git("init", "-q")
	var seen []string
	step := func(what, want string) {
		t.Helper()
		got := version()
		if !regexp.MustCompile("^" + want + "$").MatchString(got) {
			t.Errorf("%s: version %q, want %q", what, got, want)
		}
		seen = append(seen, got)
	}
	h := commit()
	step("no tag", `0\.0\.0~git20250107\.`+h)
	git("tag", "v1.2.0")
	step("on v1.2.0", `1\.2\.0`)
	commit()
	h = commit()
	step("two commits after v1.2.0", `1\.2\.0\+2\.g`+h)
	git("tag", "v2.0.0-rc1")
	step("on v2.0.0-rc1", `2\.0\.0~rc1`)
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "f")
	step("modified tree", `2\.0\.0~rc1\+dirty`)
	git("commit", "-q", "-m", "f")
	git("tag", "v2.0.0")
	step("on v2.0.0", `2\.0\.0`)

	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("skipping the ordering: dpkg not installed")
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] == seen[i] {
			continue
		}
		if err := exec.Command("dpkg", "--compare-versions", seen[i-1], "lt", seen[i]).Run(); err != nil {
			t.Errorf("dpkg does not sort %s before %s", seen[i-1], seen[i])
		}
	}
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}
