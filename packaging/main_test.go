package packaging

import (
	"os"
	"testing"

	"github.com/mcrelay/mcr/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}
