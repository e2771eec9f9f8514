package jsontext

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestKind(t *testing.T) {
	for in, want := range map[string]string{`null`: "null", `"x"`: "string", `1.5`: "number",
		`true`: "boolean", `[1]`: "array", `{"a":1}`: "object"} {
		dec := json.NewDecoder(strings.NewReader(in))
		dec.UseNumber()
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if got := Kind(tok); got != want {
			t.Errorf("Kind of %s = %q, want %q", in, got, want)
		}
	}
}

func TestSyntaxMessage(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":`:  "invalid JSON: unexpected end of input",
		`{"a" 1`: "invalid JSON at byte 6: invalid character '1' after object key",
	} {
		dec := json.NewDecoder(strings.NewReader(in))
		var v any
		err := dec.Decode(&v)
		if got := SyntaxMessage(dec, err); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
