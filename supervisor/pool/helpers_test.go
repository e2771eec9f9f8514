package pool

import (
	"io"
	"log/slog"

	"github.com/mcrelay/mcr/internal/syncbuf"
	"github.com/mcrelay/mcr/supervisor/pool/pooltest"
)

// testLogger returns a logger into buf (or nowhere when buf is nil).
func testLogger(buf *syncbuf.Buffer) *slog.Logger {
	var w io.Writer = io.Discard
	if buf != nil {
		w = buf
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// The pool tests run this test binary as their workers (pooltest).
func init() { pooltest.RunIfWorker() }
