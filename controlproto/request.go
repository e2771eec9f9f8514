package controlproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/mcrelay/mcr/internal/jsontext"

	"github.com/mcrelay/mcr/ruleset"
)

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// OK returns a successful response carrying result encoded as JSON; a nil
// result gives `{"ok":true}`. A result that does not encode becomes an
// internal error response, so a handler can always send what OK returns.
func OK(result any) Response {
	if result == nil {
		return Response{OK: true}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return Fail(CodeInternal, "encode result: %v", err)
	}
	return Response{OK: true, Result: raw}
}

// Fail returns an error response with code and a formatted message.
func Fail(code, format string, args ...any) Response {
	return Response{Error: Errorf(code, format, args...)}
}

// ErrorResponse returns the response reporting err: the *Error in its chain
// if there is one, otherwise an internal error with err's text.
func ErrorResponse(err error) Response {
	var perr *Error
	if errors.As(err, &perr) {
		return Response{Error: perr}
	}
	return Fail(CodeInternal, "%v", err)
}

// WriteResponse writes r as one line of JSON with a single Write.
func WriteResponse(w io.Writer, r Response) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write response: %w", err)
	}
	return nil
}

// Request fields, by JSON name, and the commands that take them. A field
// given to a command that does not take it is an error, so a misspelt
// command shape fails loudly instead of being half ignored.
const (
	fieldCommand = "command"
	fieldRule    = "rule"
	fieldID      = "id"
	fieldPath    = "path"
	fieldConfig  = "config"
	fieldLevel   = "level"
	fieldLimit   = "limit"
	fieldSince   = "since"
	fieldSnaplen = "snaplen"
	fieldIface   = "interface"
)

// argFields are the request fields besides "command", in the order errors
// about them are reported.
var argFields = []string{fieldRule, fieldID, fieldPath, fieldConfig, fieldLevel, fieldLimit, fieldSince, fieldSnaplen, fieldIface}

// commandArgs lists, per command, the request fields besides "command" it
// accepts.
var commandArgs = map[string][]string{
	CmdPing:         nil,
	CmdGetVersion:   nil,
	CmdAddRule:      {fieldRule},
	CmdRemoveRule:   {fieldID},
	CmdListRules:    nil,
	CmdGetStats:     nil,
	CmdListWorkers:  nil,
	CmdGetConfig:    nil,
	CmdLoadConfig:   {fieldPath, fieldConfig},
	CmdSaveConfig:   {fieldPath},
	CmdCheckConfig:  {fieldPath, fieldConfig},
	CmdGetLogLevel:  nil,
	CmdSetLogLevel:  {fieldLevel},
	CmdEnableTrace:  {fieldID, fieldLimit, fieldSnaplen},
	CmdDisableTrace: {fieldID},
	CmdGetTrace:     {fieldID, fieldSince},
	CmdListGroups:   {fieldIface},
}

// DecodeRequest decodes one request line strictly. Field names must match
// exactly; unknown, repeated or inapplicable fields, values of the wrong
// type, trailing data, unknown commands and missing arguments are
// invalid_argument errors whose message names the problem:
//
//	unknown field "foo"
//	unknown command "Foo"
//	RemoveRule needs "id"
//	field "id" does not apply to Ping
//	LoadConfig needs "path" or "config", not both
//
// A rule is decoded, normalised and validated with ruleset.DecodeRule, a
// config with ruleset.DecodeConfig; their messages name the field path
// relative to the rule or config ("outputs[0].port: must be 1..65535").
func DecodeRequest(line []byte) (Request, *Error) {
	fields, perr := splitRequest(line)
	if perr != nil {
		return Request{}, perr
	}
	var req Request
	req.Command = string(fields[fieldCommand])
	args, known := commandArgs[req.Command]
	switch {
	case req.Command == "":
		return Request{}, Errorf(CodeInvalidArgument, "missing %q", fieldCommand)
	case !known:
		return Request{}, Errorf(CodeInvalidArgument, "unknown command %s", jsontext.Quote(req.Command))
	}
	for _, name := range argFields {
		if _, given := fields[name]; given && !slices.Contains(args, name) {
			return Request{}, Errorf(CodeInvalidArgument, "field %q does not apply to %s", name, req.Command)
		}
	}
	if perr := checkArgs(req.Command, fields); perr != nil {
		return Request{}, perr
	}
	req.ID = string(fields[fieldID])
	req.Path = string(fields[fieldPath])
	req.Level = string(fields[fieldLevel])
	req.Interface = string(fields[fieldIface])
	if perr := decodeNumbers(&req, fields); perr != nil {
		return Request{}, perr
	}
	if raw, ok := fields[fieldRule]; ok {
		r, err := ruleset.DecodeRule(raw)
		if err != nil {
			return Request{}, Errorf(CodeInvalidArgument, "%v", err)
		}
		req.Rule = &r
	}
	if raw, ok := fields[fieldConfig]; ok {
		c, err := ruleset.DecodeConfig(raw)
		if err != nil {
			return Request{}, Errorf(CodeInvalidArgument, "%v", err)
		}
		req.Config = &c
	}
	return req, nil
}

// checkArgs reports a required argument that is missing.
func checkArgs(cmd string, fields map[string][]byte) *Error {
	has := func(name string) bool { _, ok := fields[name]; return ok }
	switch cmd {
	case CmdAddRule:
		if !has(fieldRule) {
			return Errorf(CodeInvalidArgument, "%s needs %q", cmd, fieldRule)
		}
	case CmdRemoveRule, CmdEnableTrace, CmdDisableTrace, CmdGetTrace:
		if !has(fieldID) {
			return Errorf(CodeInvalidArgument, "%s needs %q", cmd, fieldID)
		}
	case CmdSetLogLevel:
		if !has(fieldLevel) {
			return Errorf(CodeInvalidArgument, "%s needs %q", cmd, fieldLevel)
		}
	case CmdLoadConfig, CmdCheckConfig:
		if has(fieldPath) == has(fieldConfig) {
			return Errorf(CodeInvalidArgument, "%s needs %q or %q, not both", cmd, fieldPath, fieldConfig)
		}
	}
	return nil
}

// stringFields are the request fields whose values are JSON strings; the
// others ("rule", "config") are objects handed to the ruleset decoders.
var stringFields = map[string]bool{fieldCommand: true, fieldID: true, fieldPath: true, fieldLevel: true, fieldIface: true}

// splitRequest reads the top-level object of a request line into its
// fields: the text of string fields, the raw JSON of object fields. Null
// values and empty strings count as absent.
func splitRequest(line []byte) (map[string][]byte, *Error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(dec, err)
	}
	if tok != json.Delim('{') {
		return nil, Errorf(CodeInvalidArgument, "request must be a JSON object, got %s", jsontext.Kind(tok))
	}
	fields := make(map[string][]byte, 2)
	seen := make(map[string]bool, 2)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(dec, err)
		}
		name := tok.(string) // Token reports a non-string key as a syntax error
		if seen[name] {
			return nil, Errorf(CodeInvalidArgument, "field %s given twice", jsontext.Quote(name))
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(dec, err)
		}
		value, perr := fieldValue(name, raw)
		if perr != nil {
			return nil, perr
		}
		if value != nil {
			fields[name] = value
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, syntaxError(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(CodeInvalidArgument, "unexpected data after the JSON object")
	}
	return fields, nil
}

// fieldValue checks one field's raw value and returns what splitRequest
// keeps of it, nil for an absent value.
func fieldValue(name string, raw json.RawMessage) ([]byte, *Error) {
	if string(raw) == "null" {
		return nil, nil
	}
	if numberFields[name] {
		if rawKind(raw) != "number" {
			return nil, Errorf(CodeInvalidArgument, "%s: must be a number, got %s", name, rawKind(raw))
		}
		return raw, nil
	}
	if !stringFields[name] {
		if name != fieldRule && name != fieldConfig {
			return nil, Errorf(CodeInvalidArgument, "unknown field %s", jsontext.Quote(name))
		}
		if raw[0] != '{' {
			return nil, Errorf(CodeInvalidArgument, "%s: must be an object, got %s", name, rawKind(raw))
		}
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, Errorf(CodeInvalidArgument, "%s: must be a string, got %s", name, rawKind(raw))
	}
	if s == "" {
		return nil, nil
	}
	return []byte(s), nil
}

func syntaxError(dec *json.Decoder, err error) *Error {
	return Errorf(CodeInvalidArgument, "%s", jsontext.SyntaxMessage(dec, err))
}

// rawKind names the JSON type of a raw value.
func rawKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// numberFields are the request fields whose values are non-negative JSON
// integers.
var numberFields = map[string]bool{fieldLimit: true, fieldSince: true, fieldSnaplen: true}

// decodeNumbers sets the number fields of req from fields and checks
// their ranges.
func decodeNumbers(req *Request, fields map[string][]byte) *Error {
	for _, f := range []struct {
		name string
		max  uint64
		set  func(uint64)
	}{
		{fieldLimit, MaxTraceLimit, func(v uint64) { req.Limit = int(v) }},
		{fieldSnaplen, MaxTraceSnaplen, func(v uint64) { req.Snaplen = int(v) }},
		{fieldSince, math.MaxUint64, func(v uint64) { req.Since = v }},
	} {
		raw, ok := fields[f.name]
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || v > f.max {
			return Errorf(CodeInvalidArgument, "%s: must be an integer 0..%d, got %s", f.name, f.max, jsontext.Cut(string(raw)))
		}
		f.set(v)
	}
	return nil
}
