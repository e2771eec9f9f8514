package worker

import (
	"strings"
	"testing"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestCheckUnprivilegedRefusesRoot runs the check in the test process,
// which runs as root: the worker would refuse to run, and says why.
func TestCheckUnprivilegedRefusesRoot(t *testing.T) {
	netnstest.RequireRoot(t)
	err := checkUnprivileged("nobody")
	want := `Uid is "0\t0\t0\t0", want "65534\t65534\t65534\t65534"`
	if err == nil || !strings.HasPrefix(err.Error(), "thread ") || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("checkUnprivileged(nobody) as root: %v, want an error ending %q", err, want)
	}
	if err := checkUnprivileged("no-such-user-mcr"); err == nil || !strings.Contains(err.Error(), "worker user: ") {
		t.Errorf("checkUnprivileged of an unknown user: %v, want a lookup error", err)
	}
	// The probe must be able to tell: as root it opens the socket.
	if err := probeRawSocket(); err != nil {
		t.Errorf("probeRawSocket as root: %v, want nil", err)
	}
}
