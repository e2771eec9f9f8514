// Package jsontext words the errors of mcr's strict JSON decoders (control
// requests, rules and config files) the same way: where the syntax broke,
// and which JSON type stood where another was expected.
package jsontext

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
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

// maxEcho is how many bytes of an offending value an error message quotes:
// enough to recognise the value, while a hostile one of 500 KB gets a reply
// of a few hundred bytes rather than one as large as itself.
const maxEcho = 100

// Cut returns s when it is at most 100 bytes long, and otherwise its first
// bytes (ending at a rune boundary) followed by "…" and s's length:
// "123456… (500000 bytes)". Error messages print values a client sent
// through Cut or Quote.
func Cut(s string) string { return CutTo(s, maxEcho) }

// CutTo is Cut with a limit of n bytes.
func CutTo(s string, n int) string {
	prefix, cut := cutTo(s, n)
	if !cut {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", prefix, len(s))
}

// Quote is Cut for values that %q would print: `"abc"`, or
// `"aaaa…" (500000 bytes)` for a long one.
func Quote(s string) string {
	prefix, cut := cutTo(s, maxEcho)
	if !cut {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q (%d bytes)", prefix+"…", len(s))
}

// cutTo returns the first n bytes of s or fewer, ending at a rune
// boundary, and whether that is less than s.
func cutTo(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	end := n
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end], true
}
