package worker

import (
	"context"
	"log/slog"
	"syscall"
)

// errAgain is what a non-blocking write to a full pipe fails with.
var errAgain error = syscall.EAGAIN

// maxRecord is the size every log record stays below: writes of fewer than
// PIPE_BUF (4096) bytes to a pipe are atomic (pipe(7)), so records from the
// worker never interleave or tear, and a full pipe refuses a record whole.
const maxRecord = 4096

// Limits that keep a record under maxRecord: message and string values are
// cut, and attributes beyond maxAttrs are left out.
const (
	maxMessage   = 512
	maxAttrValue = 256
	maxAttrs     = 8
)

// recordWriter is the io.Writer under the worker's JSON log handler, which
// writes each record with one Write. It writes each record with one
// non-blocking write and drops it, counting, when the pipe is full; the
// event loop never waits for the supervisor to read logs.
type recordWriter struct {
	write   func([]byte) (int, error)
	dropped uint64
}

func (w *recordWriter) Write(p []byte) (int, error) {
	if len(p) >= maxRecord {
		w.dropped++
		return len(p), nil
	}
	if n, err := w.write(p); err != nil || n != len(p) {
		w.dropped++
	}
	return len(p), nil
}

// newLogger returns the worker's logger: JSON records, one per write, each
// carrying the worker id, cut to stay under maxRecord.
func newLogger(w *recordWriter, id int) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
	return slog.New(clampHandler{h}).With("worker", id)
}

// clampHandler cuts long messages and attribute values and caps the number
// of attributes, so that every record fits in one atomic pipe write.
type clampHandler struct{ h slog.Handler }

func (c clampHandler) Enabled(ctx context.Context, l slog.Level) bool { return c.h.Enabled(ctx, l) }

func (c clampHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, clamp(r.Message, maxMessage), r.PC)
	n := 0
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(clampAttr(a))
		n++
		return n < maxAttrs
	})
	return c.h.Handle(ctx, out)
}

func (c clampHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for i := range as {
		as[i] = clampAttr(as[i])
	}
	return clampHandler{c.h.WithAttrs(as)}
}

func (c clampHandler) WithGroup(name string) slog.Handler { return clampHandler{c.h.WithGroup(name)} }

// clampAttr turns errors and other values into text and cuts it.
func clampAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, clamp(v.String(), maxAttrValue))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, clamp(err.Error(), maxAttrValue))
		}
		return slog.String(a.Key, clamp(v.String(), maxAttrValue))
	case slog.KindGroup:
		return slog.String(a.Key, clamp(v.String(), maxAttrValue))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// clamp cuts s to at most n bytes, on a UTF-8 boundary, marking the cut.
func clamp(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
