package pool

import (
	"bufio"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReemitLogLine(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	workerTime := time.Date(2026, 1, 2, 3, 4, 4, 123456789, time.UTC)
	tests := []struct {
		name      string
		line      string
		truncated bool
		want      logRecord
	}{
		{
			name: "json record",
			line: `{"time":"2026-01-02T03:04:04.123456789Z","level":"ERROR","msg":"send failed","rule":"a","errno":11}`,
			want: logRecord{Time: workerTime, Level: slog.LevelError, Msg: "send failed",
				Attrs: map[string]any{"worker": int64(3), "rule": "a", "errno": int64(11)},
				Keys:  []string{"worker", "rule", "errno"}},
		},
		{
			name: "level offset, float, bool, null, array, group",
			line: `{"level":"WARN+2","msg":"m","f":1.5,"ok":true,"n":null,"list":[1,"x"],"g":{"a":1,"h":{"b":"c"}}}`,
			want: logRecord{Time: now, Level: slog.LevelWarn + 2, Msg: "m",
				Attrs: map[string]any{"worker": int64(3), "f": 1.5, "ok": true, "n": nil,
					"list": []any{int64(1), "x"}, "g.a": int64(1), "g.h.b": "c"},
				Keys: []string{"worker", "f", "ok", "n", "list", "g.a", "g.h.b"}},
		},
		{
			name: "own worker attribute gives way",
			line: `{"level":"DEBUG","msg":"m","worker":99}`,
			want: logRecord{Time: now, Level: slog.LevelDebug, Msg: "m",
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "unparsable time is now",
			line: `{"time":"yesterday","level":"INFO","msg":"m"}`,
			want: logRecord{Time: now, Level: slog.LevelInfo, Msg: "m",
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "plain text",
			line: `panic: runtime error: index out of range`,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: "panic: runtime error: index out of range",
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "json without level",
			line: `{"msg":"m"}`,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: `{"msg":"m"}`,
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "json with bad level",
			line: `{"level":"LOUD","msg":"m"}`,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: `{"level":"LOUD","msg":"m"}`,
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "json with trailing data",
			line: `{"level":"INFO","msg":"m"} x`,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: `{"level":"INFO","msg":"m"} x`,
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name: "json array",
			line: `[1]`,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: `[1]`,
				Attrs: map[string]any{"worker": int64(3)}, Keys: []string{"worker"}},
		},
		{
			name:      "truncated record is text",
			line:      `{"level":"INFO","msg":"m","x":"aaa`,
			truncated: true,
			want: logRecord{Time: now, Level: slog.LevelWarn, Msg: `{"level":"INFO","msg":"m","x":"aaa`,
				Attrs: map[string]any{"worker": int64(3), "truncated": true}, Keys: []string{"worker", "truncated"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newLogCapture()
			reemitLogLine(c, 3, []byte(tt.line), tt.truncated, now)
			if diff := cmp.Diff([]logRecord{tt.want}, *c.recs); diff != "" {
				t.Errorf("re-emitted (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReemitLogLineRespectsLevel(t *testing.T) {
	var out strings.Builder
	h := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})
	reemitLogLine(h, 0, []byte(`{"level":"INFO","msg":"quiet"}`), false, time.Now())
	reemitLogLine(h, 0, []byte(`{"level":"ERROR","msg":"loud"}`), false, time.Now())
	if got := out.String(); strings.Contains(got, "quiet") || !strings.Contains(got, `level=ERROR msg=loud worker=0`) {
		t.Errorf("handler at WARN got %q, want only the ERROR record", got)
	}
}

func TestReadLogLine(t *testing.T) {
	long := strings.Repeat("x", 40)
	input := "short\r\n" + long + "\n" + "after\n" + "no newline"
	br := bufio.NewReaderSize(strings.NewReader(input), 16)
	type line struct {
		Text      string
		Truncated bool
		Err       bool
	}
	var got []line
	for {
		b, truncated, err := readLogLine(br)
		got = append(got, line{string(b), truncated, err != nil})
		if err != nil {
			break
		}
	}
	want := []line{
		{Text: "short"},
		{Text: long[:16], Truncated: true},
		{Text: "after"},
		{Text: "no newline", Err: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}
