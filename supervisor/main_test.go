package supervisor

import (
	"testing"

	"github.com/mcrelay/mcr/internal/testbin"
	"github.com/mcrelay/mcr/supervisor/pool/pooltest"
)

// The daemon tests run this test binary as their workers (pooltest).
func init() { pooltest.RunIfWorker() }

// TestMain removes the binaries internal/testbin built for this package's
// tests (mcrctl for the socket-permission test).
func TestMain(m *testing.M) { testbin.Main(m) }
