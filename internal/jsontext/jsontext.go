// Package jsontext words the errors of mcr's strict JSON decoders (control
// requests, rules and config files) the same way: where the syntax broke,
// and which JSON type stood where another was expected.
package jsontext

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SyntaxMessage describes a decoding error of dec: "invalid JSON:
// unexpected end of input", or "invalid JSON at byte N: …".
func SyntaxMessage(dec *json.Decoder, err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "invalid JSON: unexpected end of input"
	}
	var serr *json.SyntaxError
	if errors.As(err, &serr) {
		return fmt.Sprintf("invalid JSON at byte %d: %s", serr.Offset, serr)
	}
	return fmt.Sprintf("invalid JSON at byte %d: %s", dec.InputOffset(), err)
}

// Kind names the JSON type of a token read with json.Decoder.Token:
// "null", "string", "number", "boolean", "array" or "object".
func Kind(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	if tok == json.Delim('[') {
		return "array"
	}
	return "object"
}
