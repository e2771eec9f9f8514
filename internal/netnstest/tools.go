package netnstest

import (
	"os/exec"
	"testing"
)

// RequireTools skips the test, naming the first one missing, unless every
// command of tools is on PATH. why, when not empty, says what the test
// needs them for.
func RequireTools(t testing.TB, why string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := "skipping: " + tool + " not installed"
			if why != "" {
				msg += " (" + why + ")"
			}
			t.Skip(msg)
		}
	}
}
