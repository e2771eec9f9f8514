package worker

import (
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestLogRecordsStayAtomic(t *testing.T) {
	var writes [][]byte
	full := false
	w := &recordWriter{write: func(p []byte) (int, error) {
		if full {
			return -1, syscall.EAGAIN
		}
		writes = append(writes, append([]byte(nil), p...))
		return len(p), nil
	}}
	log := newLogger(w, 7)
	long := strings.Repeat("é", 3000)
	log.Warn(long, "a", long, "err", errors.New(long), "n", 5)
	log.Info("short", "rule", "x")
	full = true
	log.Info("dropped")

	if len(writes) != 2 {
		t.Fatalf("%d writes, want one per record (2)", len(writes))
	}
	if w.dropped != 1 {
		t.Errorf("dropped = %d, want 1 (the record the full pipe refused)", w.dropped)
	}
	for _, rec := range writes {
		if len(rec) >= maxRecord {
			t.Errorf("record of %d bytes, want < %d", len(rec), maxRecord)
		}
		var m map[string]any
		if err := json.Unmarshal(rec, &m); err != nil {
			t.Fatalf("record is not JSON: %v: %s", err, rec)
		}
		if m["worker"] != 7.0 {
			t.Errorf("record without worker 7: %s", rec)
		}
	}
	var first map[string]any
	mustNoErr(t, json.Unmarshal(writes[0], &first))
	if msg := first["msg"].(string); !strings.HasSuffix(msg, "…") || len(msg) > maxMessage {
		t.Errorf("long message not cut to %d bytes: %d bytes", maxMessage, len(msg))
	}
	if first["n"] != 5.0 {
		t.Errorf("numeric attribute lost: %v", first["n"])
	}
}

func TestClamp(t *testing.T) {
	tests := []struct{ in, want string }{
		{"short", "short"},
		{"abcdefghi", "abcde…"},
		{"abcdéfgh", "abcd…"}, // never cuts inside a UTF-8 sequence
	}
	for _, tc := range tests {
		if got := clamp(tc.in, 8); got != tc.want {
			t.Errorf("clamp(%q, 8) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
