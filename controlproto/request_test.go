package controlproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mcrelay/mcr/ruleset"
)

const validRule = `{"id":"market-a","input":{"interface":"eth0","group":"239.1.1.1","port":5000},` +
	`"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000,"ttl":8}]}`

func wantRule() *ruleset.Rule {
	return &ruleset.Rule{
		ID:      "market-a",
		Input:   ruleset.Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000},
		Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000, TTL: 8}},
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Request
	}{
		{name: "ping", line: `{"command":"Ping"}`, want: Request{Command: CmdPing}},
		{name: "whitespace", line: " { \"command\" : \"Ping\" } \t", want: Request{Command: CmdPing}},
		{name: "null argument is absent", line: `{"command":"Ping","id":null,"rule":null}`, want: Request{Command: CmdPing}},
		{name: "add rule", line: `{"command":"AddRule","rule":` + validRule + `}`, want: Request{Command: CmdAddRule, Rule: wantRule()}},
		{name: "add rule normalises", line: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"FF3E::0001","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}}`,
			want: Request{Command: CmdAddRule, Rule: &ruleset.Rule{
				ID:      ruleset.DefaultID(ruleset.Input{Interface: "eth0", Group: "ff3e::1", Port: 5000}),
				Input:   ruleset.Input{Interface: "eth0", Group: "ff3e::1", Port: 5000},
				Outputs: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000}},
			}}},
		{name: "remove rule", line: `{"command":"RemoveRule","id":"market-a"}`, want: Request{Command: CmdRemoveRule, ID: "market-a"}},
		{name: "load config by path", line: `{"command":"LoadConfig","path":"/etc/mcr.json"}`, want: Request{Command: CmdLoadConfig, Path: "/etc/mcr.json"}},
		{name: "load config inline", line: `{"command":"LoadConfig","config":{"rules":[` + validRule + `]}}`,
			want: Request{Command: CmdLoadConfig, Config: &ruleset.Config{Rules: []ruleset.Rule{*wantRule()}}}},
		{name: "check empty config", line: `{"command":"CheckConfig","config":{"rules":[]}}`,
			want: Request{Command: CmdCheckConfig, Config: &ruleset.Config{Rules: []ruleset.Rule{}}}},
		{name: "save config default path", line: `{"command":"SaveConfig"}`, want: Request{Command: CmdSaveConfig}},
		{name: "save config to path", line: `{"command":"SaveConfig","path":"/tmp/x.json"}`, want: Request{Command: CmdSaveConfig, Path: "/tmp/x.json"}},
		{name: "set log level", line: `{"command":"SetLogLevel","level":"debug"}`, want: Request{Command: CmdSetLogLevel, Level: "debug"}},
		{name: "get stats", line: `{"command":"GetStats"}`, want: Request{Command: CmdGetStats}},
		{name: "enable trace", line: `{"command":"EnableTrace","id":"r","limit":50,"snaplen":1500}`,
			want: Request{Command: CmdEnableTrace, ID: "r", Limit: 50, Snaplen: 1500}},
		{name: "get trace since", line: `{"command":"GetTrace","id":"r","since":18446744073709551615}`,
			want: Request{Command: CmdGetTrace, ID: "r", Since: 18446744073709551615}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, perr := DecodeRequest([]byte(tt.line))
			if perr != nil {
				t.Fatalf("DecodeRequest: %v", perr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string // the message; the code is always invalid_argument
	}{
		{name: "empty", line: ``, want: "invalid JSON: unexpected end of input"},
		{name: "not JSON", line: `hello`, want: "invalid JSON at byte 1: invalid character 'h' looking for beginning of value"},
		{name: "truncated", line: `{"command":"Ping"`, want: "invalid JSON: unexpected end of input"},
		{name: "array", line: `["Ping"]`, want: "request must be a JSON object, got array"},
		{name: "null", line: `null`, want: "request must be a JSON object, got null"},
		{name: "string", line: `"Ping"`, want: "request must be a JSON object, got string"},
		{name: "trailing data", line: `{"command":"Ping"} {}`, want: "unexpected data after the JSON object"},
		{name: "unknown field", line: `{"command":"Ping","verbose":true}`, want: `unknown field "verbose"`},
		{name: "field name case", line: `{"Command":"Ping"}`, want: `unknown field "Command"`},
		{name: "repeated field", line: `{"command":"Ping","command":"GetStats"}`, want: `field "command" given twice`},
		{name: "missing command", line: `{}`, want: `missing "command"`},
		{name: "unknown command", line: `{"command":"Foo"}`, want: `unknown command "Foo"`},
		{name: "command case", line: `{"command":"ping"}`, want: `unknown command "ping"`},
		{name: "command not string", line: `{"command":1}`, want: "command: must be a string, got number"},
		{name: "id not string", line: `{"command":"RemoveRule","id":["a"]}`, want: "id: must be a string, got array"},
		{name: "rule not object", line: `{"command":"AddRule","rule":"x"}`, want: "rule: must be an object, got string"},
		{name: "remove without id", line: `{"command":"RemoveRule"}`, want: `RemoveRule needs "id"`},
		{name: "remove with empty id", line: `{"command":"RemoveRule","id":""}`, want: `RemoveRule needs "id"`},
		{name: "add without rule", line: `{"command":"AddRule"}`, want: `AddRule needs "rule"`},
		{name: "set log level without level", line: `{"command":"SetLogLevel"}`, want: `SetLogLevel needs "level"`},
		{name: "load config without source", line: `{"command":"LoadConfig"}`, want: `LoadConfig needs "path" or "config", not both`},
		{name: "check config with both", line: `{"command":"CheckConfig","path":"/a","config":{"rules":[]}}`, want: `CheckConfig needs "path" or "config", not both`},
		{name: "argument of another command", line: `{"command":"Ping","id":"x"}`, want: `field "id" does not apply to Ping`},
		{name: "rule to remove", line: `{"command":"RemoveRule","id":"a","rule":` + validRule + `}`, want: `field "rule" does not apply to RemoveRule`},
		{name: "invalid rule", line: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":0}]}}`,
			want: "outputs[0].port: must be 1..65535"},
		{name: "unknown rule field", line: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000,"tll":8}]}}`,
			want: `outputs[0]: unknown field "tll"`},
		{name: "limit not number", line: `{"command":"EnableTrace","id":"r","limit":"5"}`, want: "limit: must be a number, got string"},
		{name: "negative limit", line: `{"command":"EnableTrace","id":"r","limit":-1}`, want: "limit: must be an integer 0..100000, got -1"},
		{name: "limit too large", line: `{"command":"EnableTrace","id":"r","limit":100001}`, want: "limit: must be an integer 0..100000, got 100001"},
		{name: "fractional since", line: `{"command":"GetTrace","id":"r","since":1.5}`, want: "since: must be an integer 0..18446744073709551615, got 1.5"},
		{name: "trace without id", line: `{"command":"GetTrace"}`, want: `GetTrace needs "id"`},
		{name: "since to enable", line: `{"command":"EnableTrace","id":"r","since":1}`, want: `field "since" does not apply to EnableTrace`},
		{name: "invalid config", line: `{"command":"LoadConfig","config":{"rules":[` + validRule + `,` + validRule + `]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, perr := DecodeRequest([]byte(tt.line))
			if perr == nil {
				t.Fatalf("DecodeRequest succeeded: %+v", got)
			}
			if perr.Code != CodeInvalidArgument {
				t.Errorf("code = %q, want %q", perr.Code, CodeInvalidArgument)
			}
			if tt.want != "" && perr.Message != tt.want {
				t.Errorf("message = %q\nwant      %q", perr.Message, tt.want)
			}
			if diff := cmp.Diff(Request{}, got); diff != "" {
				t.Errorf("request on error is not zero (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEveryCommandDecodes(t *testing.T) {
	// Each command with its required arguments decodes; this keeps
	// commandArgs in step with the Cmd constants.
	args := map[string]string{
		CmdAddRule: `,"rule":` + validRule, CmdRemoveRule: `,"id":"a"`, CmdLoadConfig: `,"path":"/a"`,
		CmdCheckConfig: `,"path":"/a"`, CmdSetLogLevel: `,"level":"info"`,
		CmdEnableTrace: `,"id":"a","limit":10,"snaplen":100`, CmdDisableTrace: `,"id":"a"`, CmdGetTrace: `,"id":"a","since":3`,
	}
	for _, cmd := range []string{CmdPing, CmdGetVersion, CmdAddRule, CmdRemoveRule, CmdListRules, CmdGetStats,
		CmdListWorkers, CmdGetConfig, CmdLoadConfig, CmdSaveConfig, CmdCheckConfig, CmdGetLogLevel, CmdSetLogLevel,
		CmdEnableTrace, CmdDisableTrace, CmdGetTrace, CmdListGroups} {
		if _, perr := DecodeRequest([]byte(`{"command":"` + cmd + `"` + args[cmd] + `}`)); perr != nil {
			t.Errorf("%s: %v", cmd, perr)
		}
	}
	if len(commandArgs) != 17 {
		t.Errorf("commandArgs has %d commands, the test knows 17", len(commandArgs))
	}
	req, perr := DecodeRequest([]byte(`{"command":"ListGroups","interface":"eth1"}`))
	if perr != nil || req.Interface != "eth1" {
		t.Errorf("ListGroups with an interface: %+v, %v", req, perr)
	}
}

func TestResponses(t *testing.T) {
	tests := []struct {
		name string
		resp Response
		want string
	}{
		{name: "ok without result", resp: OK(nil), want: `{"ok":true}`},
		{name: "ok with result", resp: OK(IDResult{ID: "market-a"}), want: `{"ok":true,"result":{"id":"market-a"}}`},
		{name: "unencodable result", resp: OK(func() {}), want: `{"ok":false,"error":{"code":"internal","message":"encode result: json: unsupported type: func()"}}`},
		{name: "fail", resp: Fail(CodeNotFound, "no rule %q", "x"), want: `{"ok":false,"error":{"code":"not_found","message":"no rule \"x\""}}`},
		{name: "error in chain", resp: ErrorResponse(errors.Join(errors.New("ctx"), Errorf(CodeAlreadyExists, "rule a exists"))),
			want: `{"ok":false,"error":{"code":"already_exists","message":"rule a exists"}}`},
		{name: "plain error", resp: ErrorResponse(errors.New("disk full")), want: `{"ok":false,"error":{"code":"internal","message":"disk full"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteResponse(&buf, tt.resp); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want+"\n", buf.String()); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	if got, want := Errorf(CodeInvalidArgument, "port %d", 0).Error(), "invalid_argument: port 0"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 11)
	tests := []struct {
		name  string
		input string
		want  []string // "TOO LONG" marks a tooLong result
	}{
		{name: "empty", input: ""},
		{name: "lines", input: "a\nbb\n", want: []string{"a", "bb"}},
		{name: "crlf", input: "a\r\nb\r\n", want: []string{"a", "b"}},
		{name: "blank lines skipped", input: "\n\r\na\n\n", want: []string{"a"}},
		{name: "last line unterminated", input: "a\nb", want: []string{"a", "b"}},
		{name: "at limit", input: "0123456789\n", want: []string{"0123456789"}},
		{name: "too long then usable", input: long + "\nok\n", want: []string{"TOO LONG", "ok"}},
		{name: "too long unterminated", input: "a\n" + long, want: []string{"a", "TOO LONG"}},
		{name: "very long", input: strings.Repeat("y", 300_000) + "\nok\n", want: []string{"TOO LONG", "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := NewLineReader(strings.NewReader(tt.input), 10)
			var got []string
			for {
				line, tooLong, err := lr.Next()
				if err != nil {
					if err.Error() != "EOF" {
						t.Fatalf("err = %v, want EOF", err)
					}
					break
				}
				if tooLong {
					got = append(got, "TOO LONG")
					continue
				}
				got = append(got, string(line))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if cap(lr.line) > 64<<10 {
				t.Errorf("line buffer grew to %d bytes with a limit of 10", cap(lr.line))
			}
		})
	}
}

func TestLineReaderDefaultLimit(t *testing.T) {
	in := strings.Repeat("z", MaxRequestSize) + "\n" + strings.Repeat("z", MaxRequestSize+1) + "\n"
	lr := NewLineReader(strings.NewReader(in), 0)
	if line, tooLong, err := lr.Next(); err != nil || tooLong || len(line) != MaxRequestSize {
		t.Errorf("line of MaxRequestSize: len %d, tooLong %v, err %v", len(line), tooLong, err)
	}
	if _, tooLong, err := lr.Next(); err != nil || !tooLong {
		t.Errorf("line of MaxRequestSize+1: tooLong %v, err %v", tooLong, err)
	}
}
