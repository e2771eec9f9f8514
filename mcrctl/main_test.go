package mcrctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/syncbuf"
	"github.com/mcrelay/mcr/ruleset"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// Replies of a daemon with three rules (active, pending with outputs
// pending and down, down with an error), two workers (one in backoff) and
// traffic on the first rule.
const (
	rulesReply = `{"ok":true,"result":[` +
		`{"id":"market-a","name":"market data A","input":{"interface":"eth0","group":"239.1.1.1","port":5000,"source":"10.0.0.9"},` +
		`"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000,"ttl":8,"source_port":5001},{"interface":"eth1","group":"10.1.0.50","port":6000,"source":"10.1.0.1"}],"state":"active",` +
		`"output_states":["active","active"],"output_errors":["","bind to source 10.1.0.1: cannot assign requested address"],` +
		`"error":"outputs[1] 10.1.0.50:6000@eth1: bind to source 10.1.0.1: cannot assign requested address"},` +
		`{"id":"9f86d081884c7d65","input":{"interface":"vlan100","group":"ff3e::1","port":5004},` +
		`"outputs":[{"interface":"eth2","group":"ff3e::2","port":5004},{"interface":"eth2","group":"ff3e::3","port":5004},{"interface":"eth3","group":"239.9.9.9","port":5004}],"state":"pending",` +
		`"output_states":["down","down","pending"]},` +
		`{"id":"lab","name":"lab feed","input":{"interface":"eth9","group":"239.5.5.5","port":1234},` +
		`"outputs":[{"interface":"eth1","group":"239.6.6.6","port":1234,"preserve_source":true}],"state":"down","error":"join 239.5.5.5 on eth9: no such device"}]}`
	statsReply = `{"ok":true,"result":{"rules":[` +
		`{"id":"market-a","packets_in":1234567,"bytes_in":1623456789,"pps":12345.6,"bps":130000000,"outputs":[` +
		`{"destination":"239.2.2.2:6000@eth1","packets_out":1234567,"bytes_out":1623456789,"errors":0},` +
		`{"destination":"10.1.0.50:6000@eth1","packets_out":1234560,"bytes_out":1623447582,"errors":7,"error":"bind to source 10.1.0.1: cannot assign requested address"}],` +
		`"error":"outputs[1] 10.1.0.50:6000@eth1: bind to source 10.1.0.1: cannot assign requested address"},` +
		`{"id":"9f86d081884c7d65","packets_in":0,"bytes_in":0,"pps":0,"bps":0,"outputs":[` +
		`{"destination":"[ff3e::2]:5004@eth2","packets_out":0,"bytes_out":0,"errors":0},` +
		`{"destination":"[ff3e::3]:5004@eth2","packets_out":0,"bytes_out":0,"errors":0},` +
		`{"destination":"239.9.9.9:5004@eth3","packets_out":0,"bytes_out":0,"errors":0}],` +
		`"error":"output [ff3e::3]:5004@eth2: no IPv6 address on eth2"}],` +
		`"workers":[{"worker":0,"core":0,"rx_packets":700000,"no_match":12,"malformed":1,"fragments":0,"not_udp":3,"vlan_tagged":0,"bad_checksum":2,"kernel_drops":0,"buffer_exhausted":0,"egress_errors":4,"stats_dropped":0,"logs_dropped":0},` +
		`{"worker":1,"core":1,"rx_packets":534579,"no_match":0,"malformed":0,"fragments":2,"not_udp":0,"vlan_tagged":40,"bad_checksum":0,"kernel_drops":5,"buffer_exhausted":0,"egress_errors":3,"stats_dropped":0,"logs_dropped":0}],` +
		`"totals":{"packets_in":1234567,"packets_out":2469127,"kernel_drops":5,` +
		`"rules":{"active":1,"pending":1,"down":1},"outputs":{"active":2,"pending":1,"down":2,"failing":1}},` +
		`"namespace":{"ip_reasm_reqds":90,"ip_reasm_oks":40,"ip_reasm_fails":6,"ip_reasm_timeout":4}}}`
	workersReply = `{"ok":true,"result":[` +
		`{"worker":0,"pid":4242,"core":0,"state":"running","restarts":0,"uptime_s":93784.2,"ruleset_hash":"3f1a9c0e5b7d2468","in_sync":true,"resyncs":0,"backend":"uring"},` +
		`{"worker":1,"pid":4250,"core":1,"state":"backoff","restarts":3,"uptime_s":0.4,"ruleset_hash":"","in_sync":false,"resyncs":1,"backend":"mmsg"}]}`
)

// groupsReply is a ListGroups answer: one interface where mcrd queries
// IPv4 and defers to another querier on IPv6, with two groups.
const groupsReply = `{"ok":true,"result":[{"interface":"eth1","ifindex":3,"querier":true,"families":[` +
	`{"family":"ipv4","role":"querier","address":"10.1.0.1","querier":"10.1.0.1","groups":2,"queries_sent":14,"queries_received":0,"reports":9,"leaves":1},` +
	`{"family":"ipv6","role":"non-querier","address":"fe80::2","querier":"fe80::1","querier_expires_ms":251234,"groups":0,"queries_sent":2,"queries_received":3,"reports":0,"leaves":0}],` +
	`"groups":[{"group":"239.2.2.2","mode":"exclude","version":"IGMPv3","reporter":"10.1.0.50","expires_ms":254321},` +
	`{"group":"239.2.2.3","mode":"include","sources":["10.1.0.1","10.1.0.9"],"version":"IGMPv3","reporter":"10.1.0.51","expires_ms":1200}]}]}`

func scriptedDaemon(t *testing.T) *fakeDaemon {
	return newFakeDaemon(t, map[string]string{
		"ListGroups":  groupsReply,
		"ListRules":   rulesReply,
		"GetStats":    statsReply,
		"ListWorkers": workersReply,
		"Ping":        `{"ok":true}`,
	})
}

// TestTables compares the human tables with testdata/NAME.golden; run
// `go test ./mcrctl -run TestTables -update` after an intended change.
func TestTables(t *testing.T) {
	d := scriptedDaemon(t)
	tests := []struct {
		name string
		args []string
		opts runOpts
	}{
		{name: "list", args: []string{"list"}},
		{name: "list-tty", args: []string{"list"}, opts: runOpts{tty: true}},
		{name: "list-tty-no-color", args: []string{"list"}, opts: runOpts{tty: true, env: map[string]string{"NO_COLOR": "1"}}},
		{name: "workers", args: []string{"workers"}},
		{name: "workers-tty", args: []string{"workers"}, opts: runOpts{tty: true}},
		{name: "stats", args: []string{"stats"}},
		{name: "stats-tty", args: []string{"stats"}, opts: runOpts{tty: true}},
		{name: "groups", args: []string{"groups"}},
		{name: "groups-tty", args: []string{"groups", "--interface", "eth1"}, opts: runOpts{tty: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, d.path, tt.opts, tt.args...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(res.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), res.stdout); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// TestExitStatus checks the status and exact stderr of each way a run can
// end.
func TestExitStatus(t *testing.T) {
	d := newFakeDaemon(t, map[string]string{
		"Ping":       `{"ok":true}`,
		"RemoveRule": `{"ok":false,"error":{"code":"not_found","message":"no rule \"x\""}}`,
		"ListRules":  `{"ok":true,"result":[` + "\x00" + `]}`,
		"GetStats":   hangUp,
		"GetVersion": silent,
	})
	refused := filepath.Join(t.TempDir(), "refused")
	ln, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the socket file stays, nobody listens
	missing := filepath.Join(t.TempDir(), "missing.sock")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name       string
		socket     string
		args       []string
		ctx        context.Context
		stdin      string
		wantCode   int
		wantStderr string
	}{
		{name: "ok", socket: d.path, args: []string{"ping"}, wantCode: 0},
		{name: "daemon error", socket: d.path, args: []string{"remove", "--rule-id", "x"}, wantCode: 1,
			wantStderr: "mcrctl: not_found: no rule \"x\"\n"},
		{name: "reply is not JSON", socket: d.path, args: []string{"list"}, wantCode: 1,
			wantStderr: "mcrctl: call ListRules: decode response: invalid character '\\x00' looking for beginning of value\n"},
		{name: "unknown command", socket: d.path, args: []string{"frobnicate"}, wantCode: 2,
			wantStderr: "mcrctl: unknown command \"frobnicate\" for \"mcrctl\"\nRun 'mcrctl --help' for usage.\n"},
		{name: "unknown flag", socket: d.path, args: []string{"list", "--all"}, wantCode: 2,
			wantStderr: "mcrctl: unknown flag: --all\nRun 'mcrctl list --help' for usage.\n"},
		{name: "extra argument", socket: d.path, args: []string{"workers", "now"}, wantCode: 2,
			wantStderr: "mcrctl: unknown command \"now\" for \"mcrctl workers\"\nRun 'mcrctl workers --help' for usage.\n"},
		{name: "missing flag", socket: d.path, args: []string{"remove"}, wantCode: 2,
			wantStderr: "mcrctl: required flag(s) \"rule-id\" not set\nRun 'mcrctl remove --help' for usage.\n"},
		{name: "bad port flag", socket: d.path, args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1",
			"--input-port", "http", "--outputs", "239.2.2.2:1:eth1"}, wantCode: 2,
			wantStderr: "mcrctl: invalid argument \"http\" for \"--input-port\" flag: strconv.ParseInt: parsing \"http\": invalid syntax\n" +
				"Run 'mcrctl add --help' for usage.\n"},
		{name: "bad outputs", socket: d.path, args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1",
			"--input-port", "5000", "--outputs", "239.2.2.1:6000:eth1,239.2.2.2:x:eth1"}, wantCode: 2,
			wantStderr: "mcrctl: --outputs item 2 \"239.2.2.2:x:eth1\": port \"x\" is not a number\nRun 'mcrctl add --help' for usage.\n"},
		{name: "bad ttl", socket: d.path, args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1",
			"--input-port", "5000", "--outputs", "239.2.2.1:6000:eth1", "--ttl", "256"}, wantCode: 2,
			wantStderr: "mcrctl: --ttl 256: must be 0..255\nRun 'mcrctl add --help' for usage.\n"},
		{name: "bad completion shell", socket: d.path, args: []string{"completion", "ksh"}, wantCode: 2,
			wantStderr: "mcrctl: invalid argument \"ksh\" for \"mcrctl completion\"\nRun 'mcrctl completion --help' for usage.\n"},
		{name: "stdin config too large", socket: d.path, args: []string{"config", "load", "-"},
			stdin: "{" + strings.Repeat(" ", controlproto.MaxRequestSize) + "}", wantCode: 1,
			wantStderr: fmt.Sprintf("mcrctl: config from stdin is larger than %d bytes, the most one request carries: "+
				"save it to a file and give its path instead of -\n", controlproto.MaxRequestSize)},
		{name: "no socket", socket: missing, args: []string{"ping"}, wantCode: 3,
			wantStderr: "mcrctl: cannot reach mcrd: socket " + missing + " does not exist; is mcrd running? (--socket or MCR_SOCKET names another socket)\n"},
		{name: "connection refused", socket: refused, args: []string{"ping"}, wantCode: 3,
			wantStderr: "mcrctl: cannot reach mcrd: connection to " + refused + " refused; is mcrd running?\n"},
		{name: "daemon hangs up", socket: d.path, args: []string{"stats"}, wantCode: 3,
			wantStderr: "mcrctl: mcrd on " + d.path + " closed the connection before replying to GetStats\n"},
		{name: "no reply in time", socket: d.path, args: []string{"--json", "--timeout", "50ms", "version"}, wantCode: 3,
			wantStderr: "mcrctl: no reply from mcrd on " + d.path + " to GetVersion within 50ms\n"},
		{name: "interrupted", socket: d.path, args: []string{"ping"}, ctx: canceled, wantCode: 130},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.socket, runOpts{ctx: tt.ctx, stdin: tt.stdin}, tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit status %d, want %d (stderr %q)", res.code, tt.wantCode, res.stderr)
			}
			if tt.name == "interrupted" {
				if !strings.HasPrefix(res.stderr, "mcrctl: interrupted: ") {
					t.Errorf("stderr %q, want an interruption", res.stderr)
				}
				return
			}
			if diff := cmp.Diff(tt.wantStderr, res.stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSocketFromEnvironment checks that MCR_SOCKET chooses the socket and
// --socket overrides it.
func TestSocketFromEnvironment(t *testing.T) {
	d := scriptedDaemon(t)
	env := map[string]string{"MCR_SOCKET": d.path}
	if res := runCLI(t, "", runOpts{env: env}, "ping"); res.code != 0 {
		t.Errorf("MCR_SOCKET=%s mcrctl ping: exit %d, stderr %q", d.path, res.code, res.stderr)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if res := runCLI(t, missing, runOpts{env: env}, "ping"); res.code != 3 || !strings.Contains(res.stderr, missing) {
		t.Errorf("--socket %s with MCR_SOCKET set: exit %d, stderr %q; want 3 naming --socket", missing, res.code, res.stderr)
	}
}

// TestNetns checks that --netns NAME talks to the socket mcrd@NAME.service
// gives its relay, whatever MCR_SOCKET says, and that a missing relay, a
// name that is not one and a second socket flag are clear errors.
func TestNetns(t *testing.T) {
	run := t.TempDir()
	blue := newFakeDaemonAt(t, mkdirFor(t, netnsSocket(run, "blue")), map[string]string{"Ping": `{"ok":true}`})
	other := scriptedDaemon(t)
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "namespace socket", args: []string{"--netns", "blue", "ping"},
			wantStdout: "mcrd on " + blue.path + " answered in"},
		{name: "over MCR_SOCKET", env: map[string]string{"MCR_SOCKET": other.path}, args: []string{"ping", "--netns", "blue"},
			wantStdout: "mcrd on " + blue.path + " answered in"},
		{name: "relay not running", args: []string{"--netns", "red", "ping"}, wantCode: 3,
			wantStderr: "mcrctl: cannot reach mcrd: socket " + netnsSocket(run, "red") +
				" does not exist; is mcrd@red running? (systemctl status mcrd@red)\n"},
		{name: "with --socket", args: []string{"--socket", other.path, "--netns", "blue", "ping"}, wantCode: 2,
			wantStderr: "mcrctl: --socket and --netns both name a socket: give one\n"},
		{name: "path", args: []string{"--netns", "../blue", "ping"}, wantCode: 2,
			wantStderr: "mcrctl: --netns \"../blue\": not a network namespace name (`ip netns list` shows them)\n"},
		{name: "dot dot", args: []string{"--netns", "..", "ping"}, wantCode: 2,
			wantStderr: "mcrctl: --netns \"..\": not a network namespace name (`ip netns list` shows them)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, "", runOpts{env: tt.env, runtimeDir: run}, tt.args...)
			if res.code != tt.wantCode || !strings.HasPrefix(res.stdout, tt.wantStdout) ||
				!strings.HasPrefix(res.stderr, tt.wantStderr) {
				t.Errorf("mcrctl %s: exit %d, stdout %q, stderr %q; want %d, stdout %q..., stderr %q...",
					strings.Join(tt.args, " "), res.code, res.stdout, res.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
	if got := len(other.requestLines()); got != 0 {
		t.Errorf("the MCR_SOCKET daemon got %d requests, want none", got)
	}
	if got, want := NetnsSocket("blue"), "/run/mcr/netns/blue/control.sock"; got != want {
		t.Errorf("NetnsSocket(blue) = %q, want %q", got, want)
	}
}

// mkdirFor creates the directory of path and returns path.
func mkdirFor(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJSONPassthrough checks that --json prints the daemon's result byte
// for byte, whitespace and field order included, one document per line.
func TestJSONPassthrough(t *testing.T) {
	results := map[string]string{
		"ListRules":   `[ {"id":"a", "state":"active","zzz":1} ]`,
		"GetStats":    `{"totals":{"packets_in":1},   "rules":[],"workers":[]}`,
		"ListWorkers": `[]`,
		"GetVersion":  `{"protocol":1,"version":"9.9.9","go":"go1.26.8","extra":"kept"}`,
		"AddRule":     `{"id":"market-a"}`,
		"RemoveRule":  `{"id":"market-a"}`,
		"SaveConfig":  `{"path":"/etc/mcr.json","rules":3}`,
		"LoadConfig":  `{"added":1,"removed":0,"unchanged":2}`,
		"CheckConfig": `{"rules":3}`,
		"GetLogLevel": `{"level":"info"}`,
		"SetLogLevel": `{"level":"debug"}`,
	}
	replies := map[string]string{"Ping": `{"ok":true}`}
	for cmd, r := range results {
		replies[cmd] = `{"ok":true,"result":` + r + `}`
	}
	d := newFakeDaemon(t, replies)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"list"}, results["ListRules"]},
		{[]string{"stats"}, results["GetStats"]},
		{[]string{"workers"}, results["ListWorkers"]},
		{[]string{"version"}, results["GetVersion"]},
		{[]string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1", "--input-port", "5000",
			"--outputs", "239.2.2.2:6000:eth1"}, results["AddRule"]},
		{[]string{"remove", "--rule-id", "market-a"}, results["RemoveRule"]},
		{[]string{"config", "save", "/etc/mcr.json"}, results["SaveConfig"]},
		{[]string{"config", "load", "/etc/mcr.json"}, results["LoadConfig"]},
		{[]string{"config", "check", "/etc/mcr.json"}, results["CheckConfig"]},
		{[]string{"log-level", "get"}, results["GetLogLevel"]},
		{[]string{"log-level", "set", "debug"}, results["SetLogLevel"]},
		{[]string{"ping"}, "null"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:1], " "), func(t *testing.T) {
			res := runCLI(t, d.path, runOpts{}, append([]string{"--json"}, tt.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			if res.stdout != tt.want+"\n" {
				t.Errorf("stdout %q, want %q", res.stdout, tt.want+"\n")
			}
			if !json.Valid([]byte(res.stdout)) {
				t.Errorf("stdout %q is not one JSON document", res.stdout)
			}
		})
	}
}

// TestRequests checks the exact request line each command sends and what it
// prints, so mcrd sees what docs/control-protocol.md promises.
func TestRequests(t *testing.T) {
	d := newFakeDaemon(t, map[string]string{
		"AddRule":     `{"ok":true,"result":{"id":"market-a"}}`,
		"RemoveRule":  `{"ok":true,"result":{"id":"market-a"}}`,
		"SaveConfig":  `{"ok":true,"result":{"path":"/etc/mcr/rules.json","rules":3}}`,
		"LoadConfig":  `{"ok":true,"result":{"added":2,"removed":1,"unchanged":5}}`,
		"CheckConfig": `{"ok":true,"result":{"rules":3}}`,
		"GetLogLevel": `{"ok":true,"result":{"level":"info"}}`,
		"SetLogLevel": `{"ok":true,"result":{"level":"debug"}}`,
		"ListGroups":  `{"ok":true,"result":[]}`,
	})
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		stdin       string
		wantRequest string
		wantStdout  string
	}{
		{
			name: "add",
			args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1", "--input-port", "5000",
				"--input-source", "10.0.0.9", "--outputs", "239.2.2.2:6000:eth1,[ff3e::1]:6000:eth2",
				"--outputs", "10.1.0.50:6001:eth1", "--ttl", "8", "--rule-id", "market-a", "--name", "market data A"},
			wantRequest: `{"command":"AddRule","rule":{"id":"market-a","name":"market data A",` +
				`"input":{"interface":"eth0","group":"239.1.1.1","port":5000,"source":"10.0.0.9"},"outputs":[` +
				`{"interface":"eth1","group":"239.2.2.2","port":6000,"ttl":8},` +
				`{"interface":"eth2","group":"ff3e::1","port":6000,"ttl":8},` +
				`{"interface":"eth1","group":"10.1.0.50","port":6001,"ttl":8}]}}`,
			wantStdout: "market-a\n",
		},
		{
			name: "add with source ports, keeping sources",
			args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1", "--input-port", "5000",
				"--outputs", "239.2.2.2:6000:eth1:5001,[ff3e::1]:6000:eth2", "--preserve-source"},
			wantRequest: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[` +
				`{"interface":"eth1","group":"239.2.2.2","port":6000,"source_port":5001,"preserve_source":true},` +
				`{"interface":"eth2","group":"ff3e::1","port":6000,"preserve_source":true}]}}`,
			wantStdout: "market-a\n",
		},
		{
			name: "add minimal",
			args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1", "--input-port", "5000",
				"--outputs", "239.2.2.2:6000:eth1"},
			wantRequest: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},` +
				`"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}}`,
			wantStdout: "market-a\n",
		},
		{
			name: "add when joined",
			args: []string{"add", "--input-interface", "eth0", "--input-group", "239.1.1.1", "--input-port", "5000",
				"--outputs", "239.2.2.2:6000:eth1,[ff3e::1]:6000:eth2", "--when-joined"},
			wantRequest: `{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[` +
				`{"interface":"eth1","group":"239.2.2.2","port":6000,"when_joined":true},` +
				`{"interface":"eth2","group":"ff3e::1","port":6000,"when_joined":true}]}}`,
			wantStdout: "market-a\n",
		},
		{
			name:        "groups of one interface",
			args:        []string{"groups", "--interface", "eth1"},
			wantRequest: `{"command":"ListGroups","interface":"eth1"}`,
			wantStdout:  "no listener tables: no output interface of a rule and no --querier interface exists\n",
		},
		{
			name:        "remove",
			args:        []string{"remove", "--rule-id", "market-a"},
			wantRequest: `{"command":"RemoveRule","id":"market-a"}`,
			wantStdout:  "removed market-a\n",
		},
		{
			name:        "config save relative path",
			args:        []string{"config", "save", "rules.json"},
			wantRequest: `{"command":"SaveConfig","path":"` + filepath.Join(cwd, "rules.json") + `"}`,
			wantStdout:  "saved 3 rules to /etc/mcr/rules.json\n",
		},
		{
			name:        "config save default path",
			args:        []string{"config", "save"},
			wantRequest: `{"command":"SaveConfig"}`,
			wantStdout:  "saved 3 rules to /etc/mcr/rules.json\n",
		},
		{
			name:        "config load",
			args:        []string{"config", "load", "../x/rules.json"},
			wantRequest: `{"command":"LoadConfig","path":"` + filepath.Join(cwd, "../x/rules.json") + `"}`,
			wantStdout:  "loaded " + filepath.Join(cwd, "../x/rules.json") + ": 2 added, 1 removed, 5 unchanged\n",
		},
		{
			name:  "config load stdin",
			args:  []string{"config", "load", "-"},
			stdin: `{"rules":[{"input":{"interface":"eth0","group":"239.1.1.1","port":5000},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}]}`,
			wantRequest: `{"command":"LoadConfig","config":{"rules":[{"id":"` + ruleset.DefaultID(ruleset.Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000}) + `","input":{"interface":"eth0","group":"239.1.1.1","port":5000},` +
				`"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}]}}`,
			wantStdout: "loaded stdin: 2 added, 1 removed, 5 unchanged\n",
		},
		{
			name:        "config check",
			args:        []string{"config", "check", "/etc/mcr/rules.json"},
			wantRequest: `{"command":"CheckConfig","path":"/etc/mcr/rules.json"}`,
			wantStdout:  "/etc/mcr/rules.json: valid, 3 rules\n",
		},
		{
			name:        "log-level get",
			args:        []string{"log-level", "get"},
			wantRequest: `{"command":"GetLogLevel"}`,
			wantStdout:  "info\n",
		},
		{
			name:        "log-level set",
			args:        []string{"log-level", "set", "debug"},
			wantRequest: `{"command":"SetLogLevel","level":"debug"}`,
			wantStdout:  "log level set to debug\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(d.requestLines())
			res := runCLI(t, d.path, runOpts{stdin: tt.stdin}, tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			got := d.requestLines()[before:]
			if diff := cmp.Diff([]string{tt.wantRequest}, got); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if res.stdout != tt.wantStdout {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantStdout)
			}
		})
	}
}

// TestStatsWatch checks that `stats --watch` sends one GetStats and prints
// one snapshot per interval, and ends with status 0 when its context ends.
func TestStatsWatch(t *testing.T) {
	d := scriptedDaemon(t)
	once := runCLI(t, d.path, runOpts{}, "stats").stdout
	tests := []struct {
		name       string
		args       []string
		tty        bool
		wantFirst  string // the first snapshot
		wantHeader string // what starts every snapshot
	}{
		{name: "pipe", args: []string{"stats", "--watch"},
			wantFirst: "=== 15:04:05\n" + once, wantHeader: "=== 15:04:05\n"},
		{name: "terminal", args: []string{"stats", "--watch"}, tty: true,
			wantFirst:  "\x1b[H\x1b[2Jmcr stats at 15:04:05, every 10ms (Ctrl-C to quit)\n\n" + runCLI(t, d.path, runOpts{tty: true}, "stats").stdout,
			wantHeader: "\x1b[H\x1b[2J"},
		{name: "json", args: []string{"--json", "stats", "-w"},
			wantFirst: statsResult() + "\n", wantHeader: statsResult() + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const snapshots = 3
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout syncbuf.Buffer
			done := make(chan result)
			before := len(d.requestLines())
			go func() { done <- runCLIInto(t, &stdout, d.path, runOpts{tty: tt.tty, ctx: ctx}, tt.args...) }()
			netnstest.PollErr(t, 5*time.Second, time.Millisecond, func() error {
				if n := strings.Count(stdout.String(), tt.wantHeader); n < snapshots {
					return fmt.Errorf("%d of %d snapshots printed", n, snapshots)
				}
				return nil
			})
			cancel()
			res := <-done
			if res.code != 0 || res.stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 after cancel", res.code, res.stderr)
			}
			n := strings.Count(res.stdout, tt.wantHeader)
			if got := len(d.requestLines()) - before; got != n {
				t.Errorf("%d GetStats requests for %d snapshots", got, n)
			}
			if !strings.HasPrefix(res.stdout, tt.wantFirst) {
				t.Errorf("first snapshot (-want +got):\n%s", cmp.Diff(tt.wantFirst, res.stdout[:min(len(res.stdout), len(tt.wantFirst))]))
			}
			if !tt.tty && tt.name == "pipe" {
				want := tt.wantFirst + strings.Repeat("\n"+tt.wantFirst, n-1)
				if diff := cmp.Diff(want, res.stdout); diff != "" {
					t.Errorf("snapshots (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// statsResult is the result part of statsReply.
func statsResult() string {
	return strings.TrimSuffix(strings.TrimPrefix(statsReply, `{"ok":true,"result":`), "}")
}

// TestVersion checks that mcrctl's version is printed even without a
// daemon, and that a protocol mismatch is warned about.
func TestVersion(t *testing.T) {
	d := newFakeDaemon(t, map[string]string{
		"GetVersion": `{"ok":true,"result":{"protocol":2,"version":"1.4.0","commit":"0123456789ab","go":"go1.26.1"}}`,
	})
	res := runCLI(t, d.path, runOpts{}, "version")
	lines := strings.Split(res.stdout, "\n")
	if res.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "mcrctl ") {
		t.Fatalf("exit %d, stdout %q", res.code, res.stdout)
	}
	if want := "mcrd    1.4.0  commit 0123456789ab  go1.26.1  protocol 2"; lines[1] != want {
		t.Errorf("daemon line %q, want %q", lines[1], want)
	}
	if want := "mcrctl: warning: mcrd speaks protocol 2, mcrctl 1\n"; res.stderr != want {
		t.Errorf("stderr %q, want %q", res.stderr, want)
	}
	res = runCLI(t, filepath.Join(t.TempDir(), "none"), runOpts{}, "version")
	if res.code != 3 || !strings.HasPrefix(res.stdout, "mcrctl ") {
		t.Errorf("without daemon: exit %d, stdout %q; want 3 and mcrctl's version", res.code, res.stdout)
	}
}

// TestCompletion checks that each shell gets a script and that rule ids
// complete from the daemon.
func TestCompletion(t *testing.T) {
	d := scriptedDaemon(t)
	for shell, marker := range map[string]string{
		"bash": "# bash completion V2 for mcrctl",
		"zsh":  "#compdef mcrctl",
		"fish": "# fish completion for mcrctl",
	} {
		res := runCLI(t, "", runOpts{}, "completion", shell)
		if res.code != 0 || !strings.HasPrefix(res.stdout, marker) {
			t.Errorf("completion %s: exit %d, stdout starts %q", shell, res.code, res.stdout[:min(60, len(res.stdout))])
		}
	}
	res := runCLI(t, d.path, runOpts{}, "__complete", "remove", "--rule-id", "")
	want := "market-a\tmarket data A\n9f86d081884c7d65\nlab\tlab feed\n:4\n"
	if !strings.HasPrefix(res.stdout, want) {
		t.Errorf("rule id completion %q, want it to start %q", res.stdout, want)
	}

	run := t.TempDir()
	for _, name := range []string{"blue", "red"} {
		newFakeDaemonAt(t, mkdirFor(t, netnsSocket(run, name)), nil)
	}
	mkdirFor(t, netnsSocket(run, "stopped")) // a directory without socket: no relay
	res = runCLI(t, "", runOpts{runtimeDir: run}, "__complete", "list", "--netns", "")
	if want := "blue\nred\n:4\n"; !strings.HasPrefix(res.stdout, want) {
		t.Errorf("--netns completion %q, want it to start %q", res.stdout, want)
	}
}
