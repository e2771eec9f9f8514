package ruleset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/mcrelay/mcr/internal/jsontext"
)

// DecodeConfig decodes and validates a config file (`{"rules":[…]}`).
//
// Decoding is strict, stricter than encoding/json: field names must match
// exactly (encoding/json would accept "ID" for "id"), unknown and repeated
// fields, values of the wrong JSON type and anything after the document are
// errors. Every error is a *ValidationError naming the field path, e.g.
// `rules[0].outputs[0]: unknown field "tll"` or
// `rules[2].input.port: must be an integer, got string`; byte offsets in
// syntax errors count from 0. A null value leaves its field empty, as
// encoding/json does, except for "rules": it must be present and an array,
// so that a file that lost its rules (`{}`, `"rules": null`) cannot pass for
// an empty ruleset and remove every rule. An empty ruleset is written
// `{"rules": []}`.
//
// The decoded rules are then normalised (each gets its id) and checked with
// ValidateSet; the returned Config holds the normalised rules in file order.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(data, configSchema, &c); err != nil {
		return Config{}, err
	}
	for i := range c.Rules {
		c.Rules[i].Normalize()
	}
	if err := c.Querier.validate(); err != nil {
		return Config{}, err
	}
	if err := ValidateSet(c.Rules); err != nil {
		return Config{}, err
	}
	return c, nil
}

// DecodeRule decodes one rule as strictly as DecodeConfig does, normalises
// it and validates it. Errors are *ValidationError with paths relative to
// the rule ("outputs[0].port: must be 1..65535").
func DecodeRule(data []byte) (Rule, error) {
	var r Rule
	if err := decodeStrict(data, ruleSchema, &r); err != nil {
		return Rule{}, err
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// EncodeConfig encodes c the way DecodeConfig reads it: indented by two
// spaces, rules sorted by id (so saving an unchanged ruleset gives the same
// file), a newline at the end. c is not modified.
func EncodeConfig(c Config) ([]byte, error) {
	c.Rules = slices.Clone(c.Rules)
	slices.SortStableFunc(c.Rules, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	if c.Rules == nil {
		c.Rules = []Rule{} // `"rules": []`, not null
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // names are for people; keep "<" readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// schema describes the JSON shape of the config types for the strict
// checker; it must list exactly the json tags of Config, Rule, Input and
// Output (TestSchemaMatchesTypes keeps them in step).
type schema struct {
	kind   jsonKind
	fields map[string]*schema // kind == jsonObject
	elem   *schema            // kind == jsonArray
	// required fields of an object must be present and not null; the
	// hint says how to write an empty value.
	required map[string]string // kind == jsonObject: field → hint
}

type jsonKind int

const (
	jsonString jsonKind = iota + 1
	jsonInt
	jsonBool
	jsonObject
	jsonArray
)

// String names the kind as messages do: "an array".
func (k jsonKind) String() string {
	return [...]string{jsonString: "a string", jsonInt: "an integer", jsonObject: "an object", jsonArray: "an array"}[k]
}

var (
	stringSchema = &schema{kind: jsonString}
	intSchema    = &schema{kind: jsonInt}
	boolSchema   = &schema{kind: jsonBool}
	inputSchema  = &schema{kind: jsonObject, fields: map[string]*schema{
		"interface": stringSchema, "group": stringSchema, "port": intSchema, "source": stringSchema,
	}}
	outputSchema = &schema{kind: jsonObject, fields: map[string]*schema{
		"interface": stringSchema, "group": stringSchema, "port": intSchema, "ttl": intSchema,
		"source": stringSchema, "source_port": intSchema, "preserve_source": boolSchema,
		"when_joined": boolSchema,
	}}
	ruleSchema = &schema{kind: jsonObject, fields: map[string]*schema{
		"id": stringSchema, "name": stringSchema, "input": inputSchema,
		"outputs": {kind: jsonArray, elem: outputSchema},
	}}
	querierSchema = &schema{kind: jsonObject, fields: map[string]*schema{
		"interfaces": {kind: jsonArray, elem: stringSchema}, "query_interval": stringSchema,
	}}
	configSchema = &schema{kind: jsonObject, fields: map[string]*schema{
		"rules": {kind: jsonArray, elem: ruleSchema}, "querier": querierSchema,
	}, required: map[string]string{
		"rules": `an empty ruleset is written "rules": []`,
	}}
)

// decodeStrict checks data against s, then decodes it into v with
// encoding/json, which after the check can only fill in values.
func decodeStrict(data []byte, s *schema, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, "", err)
	}
	if tok == nil {
		return invalid("", "must be a JSON object, got null")
	}
	if err := checkValue(dec, tok, s, ""); err != nil {
		return err
	}
	if end := skipSpace(data, dec.InputOffset()); end < len(data) {
		return invalid("", "unexpected data after the JSON object at byte %d", end)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode: %w", err) // unreachable after checkValue
	}
	return nil
}

// checkValue checks the value starting with tok (already read) against s.
func checkValue(dec *json.Decoder, tok json.Token, s *schema, path string) *ValidationError {
	if tok == nil {
		return nil // null: encoding/json leaves the field as it is
	}
	switch s.kind {
	case jsonString:
		if _, ok := tok.(string); !ok {
			return invalid(path, "must be a string, got %s", jsontext.Kind(tok))
		}
	case jsonInt:
		n, ok := tok.(json.Number)
		if !ok {
			return invalid(path, "must be an integer, got %s", jsontext.Kind(tok))
		}
		if _, err := strconv.Atoi(n.String()); err != nil {
			return invalid(path, "must be an integer, got %s", jsontext.Cut(n.String()))
		}
	case jsonBool:
		if _, ok := tok.(bool); !ok {
			return invalid(path, "must be true or false, got %s", jsontext.Kind(tok))
		}
	case jsonObject:
		if tok != json.Delim('{') {
			return invalid(path, "must be an object, got %s", jsontext.Kind(tok))
		}
		return checkObject(dec, s, path)
	case jsonArray:
		if tok != json.Delim('[') {
			return invalid(path, "must be an array, got %s", jsontext.Kind(tok))
		}
		return checkArray(dec, s, path)
	}
	return nil
}

// checkObject checks the members of an object whose '{' has been read,
// and reads its '}'.
func checkObject(dec *json.Decoder, s *schema, path string) *ValidationError {
	seen := make(map[string]bool, len(s.fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(dec, path, err)
		}
		name := tok.(string) // Token reports a non-string key as a syntax error
		field, ok := s.fields[name]
		if !ok {
			return invalid(path, "unknown field %s", jsontext.Quote(name))
		}
		if seen[name] {
			return invalid(path, "field %s given twice", jsontext.Quote(name))
		}
		seen[name] = true
		fieldPath := joinPath(path, name)
		if tok, err = dec.Token(); err != nil {
			return syntaxError(dec, fieldPath, err)
		}
		if hint, required := s.required[name]; required && tok == nil {
			return invalid(fieldPath, "must be %s, got null (%s)", field.kind, hint)
		}
		if err := checkValue(dec, tok, field, fieldPath); err != nil {
			return err
		}
	}
	for name, hint := range s.required {
		if !seen[name] {
			return invalid(joinPath(path, name), "is required (%s)", hint)
		}
	}
	return closing(dec, path)
}

// checkArray checks the elements of an array whose '[' has been read, and
// reads its ']'.
func checkArray(dec *json.Decoder, s *schema, path string) *ValidationError {
	for i := 0; dec.More(); i++ {
		if err := next(dec, s.elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return closing(dec, path)
}

// next reads one value and checks it against s.
func next(dec *json.Decoder, s *schema, path string) *ValidationError {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, path, err)
	}
	return checkValue(dec, tok, s, path)
}

// closing reads the '}' or ']' that ends the current object or array.
func closing(dec *json.Decoder, path string) *ValidationError {
	if _, err := dec.Token(); err != nil {
		return syntaxError(dec, path, err)
	}
	return nil
}

// skipSpace returns the offset of the first byte at or after off that is
// not JSON whitespace.
func skipSpace(data []byte, off int64) int {
	i := int(off)
	for i < len(data) && strings.IndexByte(" \t\r\n", data[i]) >= 0 {
		i++
	}
	return i
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func syntaxError(dec *json.Decoder, path string, err error) *ValidationError {
	return invalid(path, "%s", jsontext.SyntaxMessage(dec, err))
}
