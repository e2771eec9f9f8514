package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"time"
)

// reemitLogLine passes one line that worker wrote on its log pipe to h, the
// supervisor's handler, with the attribute worker=N first. A line that is a
// JSON slog record (an object with a string "msg" and a valid "level", as
// slog.JSONHandler writes) is re-emitted at its level and time with its
// message and its other attributes in their order, nested objects as groups;
// its own "worker" attribute, if any, gives way to the supervisor's. Any
// other line (a Go crash trace on the worker's stderr, a line cut at
// maxLogLine) is re-emitted as-is at WARN, with truncated=true when it was
// cut.
func reemitLogLine(h slog.Handler, worker int, line []byte, truncated bool, now time.Time) {
	rec, ok := slog.Record{}, false
	if !truncated {
		rec, ok = parseLogRecord(line, now)
	}
	if !ok {
		rec = slog.NewRecord(now, slog.LevelWarn, string(line), 0)
		if truncated {
			rec.AddAttrs(slog.Bool("truncated", true))
		}
	}
	ctx := context.Background()
	if !h.Enabled(ctx, rec.Level) {
		return
	}
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, 0)
	out.AddAttrs(slog.Int("worker", worker))
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "worker" {
			out.AddAttrs(a)
		}
		return true
	})
	_ = h.Handle(ctx, out) // like slog.Logger, a handler's error has nowhere to go
}

// parseLogRecord decodes a JSON slog record. The time is now when the
// record has none that parses as RFC 3339.
func parseLogRecord(line []byte, now time.Time) (slog.Record, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return slog.Record{}, false
	}
	attrs, err := decodeMembers(dec)
	if err != nil {
		return slog.Record{}, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return slog.Record{}, false // trailing data
	}

	t, level, msg := now, slog.Level(0), ""
	var haveLevel, haveMsg bool
	rest := attrs[:0]
	for _, a := range attrs {
		switch {
		case a.Key == slog.TimeKey && a.Value.Kind() == slog.KindString:
			if parsed, err := time.Parse(time.RFC3339Nano, a.Value.String()); err == nil {
				t = parsed
			}
		case a.Key == slog.LevelKey && a.Value.Kind() == slog.KindString:
			haveLevel = level.UnmarshalText([]byte(a.Value.String())) == nil
		case a.Key == slog.MessageKey && a.Value.Kind() == slog.KindString:
			msg, haveMsg = a.Value.String(), true
		default:
			rest = append(rest, a)
		}
	}
	if !haveLevel || !haveMsg {
		return slog.Record{}, false
	}
	rec := slog.NewRecord(t, level, msg, 0)
	rec.AddAttrs(rest...)
	return rec, true
}

// decodeMembers decodes the members of a JSON object whose '{' dec has
// just read, and its closing '}', as attributes in their order.
func decodeMembers(dec *json.Decoder) ([]slog.Attr, error) {
	var attrs []slog.Attr
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string) // the decoder only yields string keys
		v, err := decodeValue(dec)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: v})
	}
	_, err := dec.Token() // '}'
	return attrs, err
}

// decodeValue decodes the next JSON value: objects become groups, integers
// int64, other numbers float64.
func decodeValue(dec *json.Decoder) (slog.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return slog.Value{}, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			attrs, err := decodeMembers(dec)
			return slog.GroupValue(attrs...), err
		}
		var items []any // t is '['
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return slog.Value{}, err
			}
			items = append(items, v.Any())
		}
		_, err := dec.Token() // ']'
		return slog.AnyValue(items), err
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return slog.Int64Value(i), nil
		}
		f, err := t.Float64()
		return slog.Float64Value(f), err
	case string:
		return slog.StringValue(t), nil
	case bool:
		return slog.BoolValue(t), nil
	default: // nil
		return slog.AnyValue(nil), nil
	}
}
