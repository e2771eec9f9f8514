package ruleset

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const specExample = `{
  "rules": [
    {
      "id": "market-a",
      "name": "market data A",
      "input": { "interface": "eth0", "group": "239.1.1.1", "port": 5000, "source": "10.0.0.9" },
      "outputs": [
        { "interface": "eth1", "group": "239.2.2.2", "port": 6000, "ttl": 8, "source": "10.1.0.1" },
        { "interface": "eth1", "group": "10.1.0.50", "port": 6000 }
      ]
    }
  ]
}`

func TestDecodeConfig(t *testing.T) {
	c, err := DecodeConfig([]byte(specExample))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Config{Rules: []Rule{validRule()}}, c); diff != "" {
		t.Errorf("DecodeConfig mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeConfigNormalises(t *testing.T) {
	c, err := DecodeConfig([]byte(`{"rules":[
		{"input":{"interface":"eth0","group":"FF3E:0::1","port":1},"outputs":[{"interface":"eth1","group":"::ffff:10.0.0.1","port":2}]},
		{"id":null,"name":null,"input":{"interface":"eth0","group":"239.0.0.1","port":1,"source":null},
		 "outputs":[{"interface":"eth1","group":"10.0.0.1","port":2,"ttl":null,"source":null}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Input: Input{Interface: "eth0", Group: "ff3e::1", Port: 1}, Outputs: []Output{{Interface: "eth1", Group: "10.0.0.1", Port: 2}}},
		{Input: Input{Interface: "eth0", Group: "239.0.0.1", Port: 1}, Outputs: []Output{{Interface: "eth1", Group: "10.0.0.1", Port: 2}}},
	}
	for i := range want {
		want[i].ID = DefaultID(want[i].Input)
	}
	if diff := cmp.Diff(want, c.Rules); diff != "" {
		t.Errorf("DecodeConfig mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeConfigEmpty(t *testing.T) {
	for _, doc := range []string{`{"rules":[]}`, " \n{ \"rules\" : [ ] }\n\n"} {
		c, err := DecodeConfig([]byte(doc))
		if err != nil || len(c.Rules) != 0 {
			t.Errorf("DecodeConfig(%q) = %+v, %v; want no rules, nil", doc, c, err)
		}
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	rule := func(outputs string) string {
		return `{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[` + outputs + `]}`
	}
	out := `{"interface":"eth1","group":"239.2.2.2","port":6000}`
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown output field", `{"rules":[` + rule(`{"interface":"eth1","group":"239.2.2.2","port":6000,"tll":8}`) + `]}`,
			`rules[0].outputs[0]: unknown field "tll"`},
		{"unknown field in second rule", `{"rules":[` + rule(out) + `,{"id":"x","input":{"iface":"eth0"}}]}`,
			`rules[1].input: unknown field "iface"`},
		{"unknown top-level field", `{"rules":[],"rule":[]}`, `unknown field "rule"`},
		{"unknown rule field", `{"rules":[{"ID":"x"}]}`, `rules[0]: unknown field "ID"`},
		{"field case differs", `{"Rules":[]}`, `unknown field "Rules"`},
		{"repeated field", `{"rules":[{"id":"a","id":"b"}]}`, `rules[0]: field "id" given twice`},
		{"port as string", `{"rules":[{"input":{"port":"5000"}}]}`, `rules[0].input.port: must be an integer, got string`},
		{"port fractional", `{"rules":[{"input":{"port":5000.5}}]}`, `rules[0].input.port: must be an integer, got 5000.5`},
		{"port exponent", `{"rules":[{"input":{"port":5e3}}]}`, `rules[0].input.port: must be an integer, got 5e3`},
		{"port huge", `{"rules":[{"input":{"port":99999999999999999999}}]}`,
			`rules[0].input.port: must be an integer, got 99999999999999999999`},
		{"ttl as boolean", `{"rules":[` + rule(`{"ttl":true}`) + `]}`, `rules[0].outputs[0].ttl: must be an integer, got boolean`},
		{"preserve_source as string", `{"rules":[` + rule(`{"preserve_source":"yes"}`) + `]}`,
			`rules[0].outputs[0].preserve_source: must be true or false, got string`},
		{"source_port as boolean", `{"rules":[` + rule(`{"source_port":false}`) + `]}`,
			`rules[0].outputs[0].source_port: must be an integer, got boolean`},
		{"group as number", `{"rules":[{"input":{"group":239}}]}`, `rules[0].input.group: must be a string, got number`},
		{"id as object", `{"rules":[{"id":{}}]}`, `rules[0].id: must be a string, got object`},
		{"outputs as object", `{"rules":[{"outputs":{}}]}`, `rules[0].outputs: must be an array, got object`},
		{"input as array", `{"rules":[{"input":[]}]}`, `rules[0].input: must be an object, got array`},
		{"rules as string", `{"rules":"x"}`, `rules: must be an array, got string`},
		// A config that lost its rules must not pass for an empty ruleset.
		{"no rules", `{}`, `rules: is required (an empty ruleset is written "rules": [])`},
		{"rules null", `{"rules":null}`, `rules: must be an array, got null (an empty ruleset is written "rules": [])`},
		{"huge port", `{"rules":[{"input":{"port":` + strings.Repeat("9", 500_000) + `}}]}`,
			`rules[0].input.port: must be an integer, got ` + strings.Repeat("9", 100) + `… (500000 bytes)`},
		{"huge field name", `{"rules":[{"` + strings.Repeat("f", 500_000) + `":1}]}`,
			`rules[0]: unknown field "` + strings.Repeat("f", 100) + `…" (500000 bytes)`},
		{"top level array", `[]`, `must be an object, got array`},
		{"top level null", `null`, `must be a JSON object, got null`},
		{"empty document", ``, `invalid JSON: unexpected end of input`},
		{"truncated", `{"rules":[{"id":"a"`, `rules[0]: invalid JSON: unexpected end of input`},
		{"trailing object", `{"rules":[]} {}`, `unexpected data after the JSON object at byte 13`},
		{"trailing garbage", `{"rules":[]}x`, `unexpected data after the JSON object at byte 12`},
		{"missing comma", `{"rules":[] "x":1}`, `invalid JSON at byte 12: invalid character '"' after object key:value pair`},
		{"non-string key", `{1:2}`, `invalid JSON at byte 1: invalid character '1'`},
		{"validation error", `{"rules":[` + rule(`{"interface":"eth1","group":"239.2.2.2","port":0}`) + `]}`,
			`rules[0].outputs[0].port: must be 1..65535`},
		{"duplicate id", `{"rules":[{"id":"x",` + rule(out)[1:] + `,{"id":"x",` + strings.Replace(rule(out), "5000", "5001", 1)[1:] + `]}`,
			`rules[1].id: "x" already used by rules[0]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeConfig([]byte(tt.doc))
			if err == nil {
				t.Fatalf("DecodeConfig() = %+v, nil; want error %q", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("DecodeConfig() error = %q, want %q", got, tt.want)
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Errorf("error is %T, want *ValidationError", err)
			}
		})
	}
}

func TestDecodeRule(t *testing.T) {
	r, err := DecodeRule([]byte(`{"input":{"interface":"eth0","group":"FF3E::1","port":5000},
		"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Rule{
		Input:   Input{Interface: "eth0", Group: "ff3e::1", Port: 5000},
		Outputs: []Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000}},
	}
	want.ID = DefaultID(want.Input)
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("DecodeRule mismatch (-want +got):\n%s", diff)
	}

	errs := []struct {
		name, doc, want string
	}{
		{"unknown field", `{"input":{},"outputs":[{"tll":1}]}`, `outputs[0]: unknown field "tll"`},
		{"invalid rule", `{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[]}`,
			`outputs: at least one output is required`},
		{"trailing data", `{}{}`, `unexpected data after the JSON object at byte 2`},
		{"trailing data after space", "{}\n x", `unexpected data after the JSON object at byte 4`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRule([]byte(tt.doc))
			if err == nil || err.Error() != tt.want {
				t.Errorf("DecodeRule() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEncodeConfig(t *testing.T) {
	b := validRule()
	b.ID = "b"
	b.Name = "<A & B>"
	a := validRule()
	a.ID = "a"
	a.Input.Port = 5001
	a.Outputs = a.Outputs[1:]
	c := Config{Rules: []Rule{b, a}}
	got, err := EncodeConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "rules": [
    {
      "id": "a",
      "name": "market data A",
      "input": {
        "interface": "eth0",
        "group": "239.1.1.1",
        "port": 5001,
        "source": "10.0.0.9"
      },
      "outputs": [
        {
          "interface": "eth1",
          "group": "10.1.0.50",
          "port": 6000
        }
      ]
    },
    {
      "id": "b",
      "name": "<A & B>",
      "input": {
        "interface": "eth0",
        "group": "239.1.1.1",
        "port": 5000,
        "source": "10.0.0.9"
      },
      "outputs": [
        {
          "interface": "eth1",
          "group": "239.2.2.2",
          "port": 6000,
          "ttl": 8,
          "source": "10.1.0.1"
        },
        {
          "interface": "eth1",
          "group": "10.1.0.50",
          "port": 6000
        }
      ]
    }
  ]
}
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("EncodeConfig mismatch (-want +got):\n%s", diff)
	}
	if c.Rules[0].ID != "b" {
		t.Errorf("EncodeConfig sorted the caller's rules")
	}
	back, err := DecodeConfig(got)
	if err != nil {
		t.Fatalf("DecodeConfig(EncodeConfig(c)) error: %v", err)
	}
	if diff := cmp.Diff([]Rule{a, b}, back.Rules); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestEncodeConfigEmpty(t *testing.T) {
	got, err := EncodeConfig(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"rules\": []\n}\n"; string(got) != want {
		t.Errorf("EncodeConfig(Config{}) = %q, want %q", got, want)
	}
}

// TestSchemaMatchesTypes keeps the strict checker's schema in step with the
// json tags of the contract types.
func TestSchemaMatchesTypes(t *testing.T) {
	for _, tt := range []struct {
		typ    reflect.Type
		schema *schema
	}{
		{reflect.TypeFor[Config](), configSchema},
		{reflect.TypeFor[Rule](), ruleSchema},
		{reflect.TypeFor[Input](), inputSchema},
		{reflect.TypeFor[Output](), outputSchema},
		{reflect.TypeFor[Querier](), querierSchema},
	} {
		var tags []string
		for f := range tt.typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			tags = append(tags, name)
			want := map[reflect.Kind]jsonKind{reflect.String: jsonString, reflect.Int: jsonInt,
				reflect.Bool: jsonBool, reflect.Struct: jsonObject, reflect.Slice: jsonArray}[f.Type.Kind()]
			if s := tt.schema.fields[name]; s == nil || s.kind != want {
				t.Errorf("%s.%s: schema has %+v, want kind %d", tt.typ.Name(), f.Name, s, want)
			}
		}
		var names []string
		for name := range tt.schema.fields {
			names = append(names, name)
		}
		slices.Sort(tags)
		slices.Sort(names)
		if diff := cmp.Diff(tags, names); diff != "" {
			t.Errorf("%s: schema fields differ from json tags (-tags +schema):\n%s", tt.typ.Name(), diff)
		}
	}
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(`{"rules":[{"input":{"port":1e999}}]}`))
	f.Add([]byte(`{"rules":[{"outputs":[{"tll":1}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeConfig(data)
		if err != nil {
			return
		}
		enc, err := EncodeConfig(c)
		if err != nil {
			t.Fatalf("EncodeConfig of a decoded config: %v", err)
		}
		back, err := DecodeConfig(enc)
		if err != nil {
			t.Fatalf("DecodeConfig(EncodeConfig(c)) error: %v\n%s", err, enc)
		}
		if Hash(back.Rules) != Hash(c.Rules) {
			t.Fatalf("round trip changed the ruleset:\n%s", enc)
		}
	})
}

// TestConfigQuerier: a config's querier settings decode, encode back the
// same, and are validated with messages that name the field.
func TestConfigQuerier(t *testing.T) {
	c, err := DecodeConfig([]byte(`{"querier":{"interfaces":["eth1","eth2"],"query_interval":"30s"},"rules":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Querier{Interfaces: []string{"eth1", "eth2"}, QueryInterval: "30s"}
	if diff := cmp.Diff(want, c.Querier); diff != "" || c.Querier.Interval() != 30*time.Second {
		t.Errorf("querier (-want +got):\n%s; interval %v", diff, c.Querier.Interval())
	}
	b, err := EncodeConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := DecodeConfig(b); err != nil || !cmp.Equal(again.Querier, want) {
		t.Errorf("round trip of %s: %+v, %v", b, again.Querier, err)
	}
	if b, _ := EncodeConfig(Config{}); strings.Contains(string(b), "querier") {
		t.Errorf("a config without querier settings encodes them: %s", b)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"querier":{"interfaces":["eth/1"]},"rules":[]}`, `querier.interfaces[0]: "eth/1" is not a valid interface name`},
		{`{"querier":{"interfaces":["eth1","eth1"]},"rules":[]}`, `querier.interfaces[1]: "eth1" is listed twice`},
		{`{"querier":{"query_interval":"500ms"},"rules":[]}`, `querier.query_interval: "500ms": want a duration from 1s to 8h49m4s, such as "125s"`},
		{`{"querier":{"query_interval":125},"rules":[]}`, `querier.query_interval: must be a string, got number`},
		{`{"querier":{"interval":"1s"},"rules":[]}`, `querier: unknown field "interval"`},
	} {
		if _, err := DecodeConfig([]byte(tt.in)); err == nil || err.Error() != tt.want {
			t.Errorf("DecodeConfig(%s) = %v, want %s", tt.in, err, tt.want)
		}
	}
}
