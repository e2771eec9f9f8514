package mcrgen

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMainUsage(t *testing.T) {
	send := []string{"send", "--interface", "eth0", "--group", "239.1.1.1", "--port", "5000"}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"unknown command", []string{"blast"}, 2,
			"mcrgen: unknown command \"blast\" for \"mcrgen\"\nRun 'mcrgen --help' for usage.\n"},
		{"missing flags", []string{"send", "--port", "5000"}, 2,
			"mcrgen: required flag(s) \"group\", \"interface\" not set\nRun 'mcrgen send --help' for usage.\n"},
		{"bad group", []string{"recv", "--interface", "eth0", "--group", "239.1.1", "--port", "5000"}, 2,
			"mcrgen: --group \"239.1.1\" is not an IP address\nRun 'mcrgen recv --help' for usage.\n"},
		{"size below the header", append(send, "--size", "23"), 2,
			"mcrgen: size 23 is out of range: 0 or 24..65000\nRun 'mcrgen send --help' for usage.\n"},
		{"size above the maximum", append(send, "--size", "65001"), 2,
			"mcrgen: size 65001 is out of range: 0 or 24..65000\nRun 'mcrgen send --help' for usage.\n"},
		{"ttl", append(send, "--ttl", "256"), 2,
			"mcrgen: ttl 256 is out of range 0..255\nRun 'mcrgen send --help' for usage.\n"},
		{"source port", append(send, "--source-port", "65536"), 2,
			"mcrgen: source port 65536 is out of range 0..65535\nRun 'mcrgen send --help' for usage.\n"},
		{"hop CPU", append(send, "--hop-cpus", "0,-1"), 2,
			"mcrgen: hop CPU -1 is negative\nRun 'mcrgen send --help' for usage.\n"},
		{"negative rate", append(send, "--rate", "-1"), 2,
			"mcrgen: rate -1 is negative\nRun 'mcrgen send --help' for usage.\n"},
		{"source family", append(send, "--source-addr", "fd00::1"), 2,
			"mcrgen: source fd00::1 and group 239.1.1.1 are of different families\nRun 'mcrgen send --help' for usage.\n"},
		{"stream id range", append(send, "--stream-id", "65536"), 2,
			"mcrgen: invalid argument \"65536\" for \"--stream-id\" flag: strconv.ParseUint: parsing \"65536\": value out of range\n" +
				"Run 'mcrgen send --help' for usage.\n"},
		{"source on unicast", []string{"recv", "--interface", "eth0", "--group", "10.0.0.2", "--port", "5000", "--source", "10.0.0.1"}, 2,
			"mcrgen: a source applies to multicast groups only, not to 10.0.0.2\nRun 'mcrgen recv --help' for usage.\n"},
		{"port", []string{"recv", "--interface", "eth0", "--group", "239.1.1.1", "--port", "0"}, 2,
			"mcrgen: port 0 is out of range 1..65535\nRun 'mcrgen recv --help' for usage.\n"},
		{"no such interface", []string{"send", "--interface", "nosuch0", "--group", "239.1.1.1", "--port", "5000"}, 1,
			"mcrgen: interface nosuch0: route ip+net: no such network interface\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d", code, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantStderr, stderr.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

func TestSendProgress(t *testing.T) {
	tests := []struct {
		sent, count uint64
		rate        float64
		want        string
	}{
		{0, 100, 0, "[..............................] 0/100 sent, 0 pps"},
		{50, 100, 49999.6, "[###############...............] 50/100 sent, 50000 pps"},
		{100, 100, 10, "[##############################] 100/100 sent, 10 pps"},
		{1234, 0, 1000, "1234 sent, 1000 pps"},
	}
	for _, tt := range tests {
		if got := sendProgress(tt.sent, tt.count, tt.rate); got != tt.want {
			t.Errorf("sendProgress(%d, %d, %g) = %q, want %q", tt.sent, tt.count, tt.rate, got, tt.want)
		}
	}
}
