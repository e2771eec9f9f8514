package jsontext

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

func TestCutAndQuote(t *testing.T) {
	long := strings.Repeat("7", 500_000)
	// 99 ASCII bytes then "é" (2 bytes): the cut at 100 falls inside it.
	accent := strings.Repeat("a", 99) + "é" + strings.Repeat("b", 50)
	for _, tc := range []struct {
		name, in, cut, quote string
	}{
		{"short", "abc", "abc", `"abc"`},
		{"exactly the limit", strings.Repeat("x", 100), strings.Repeat("x", 100), `"` + strings.Repeat("x", 100) + `"`},
		{"huge", long, strings.Repeat("7", 100) + "… (500000 bytes)", `"` + strings.Repeat("7", 100) + `…" (500000 bytes)`},
		{"cut inside a rune", accent, strings.Repeat("a", 99) + "… (151 bytes)", `"` + strings.Repeat("a", 99) + `…" (151 bytes)`},
		{"quoted escapes", "tab\there", "tab\there", `"tab\there"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.cut, Cut(tc.in)); diff != "" {
				t.Errorf("Cut (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.quote, Quote(tc.in)); diff != "" {
				t.Errorf("Quote (-want +got):\n%s", diff)
			}
		})
	}
	if got, want := CutTo("abcdef", 3), "abc… (6 bytes)"; got != want {
		t.Errorf("CutTo(abcdef, 3) = %q, want %q", got, want)
	}
}
