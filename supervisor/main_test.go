package supervisor

import (
	"testing"

	"github.com/mcrelay/mcr/internal/testbin"
)

// TestMain removes the binaries internal/testbin built for this package's
// tests (mcrctl for the socket-permission test).
func TestMain(m *testing.M) { testbin.Main(m) }
