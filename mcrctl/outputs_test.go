package mcrctl

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/ruleset"
)

func TestParseOutputs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		ttl     int
		keep    bool // --preserve-source
		want    []ruleset.Output
		wantErr string
	}{
		{name: "one IPv4", in: "239.2.2.2:6000:eth1",
			want: []ruleset.Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000}}},
		{name: "IPv6 in brackets, unicast, ttl on all", in: "[ff3e::1]:6000:eth1,10.1.0.50:6001:eth2.100", ttl: 8,
			want: []ruleset.Output{
				{Interface: "eth1", Group: "ff3e::1", Port: 6000, TTL: 8},
				{Interface: "eth2.100", Group: "10.1.0.50", Port: 6001, TTL: 8},
			}},
		{name: "source ports, IPv4 and IPv6", in: "239.2.2.2:6000:eth1:5001,[ff3e::1]:6000:eth2:65535",
			want: []ruleset.Output{
				{Interface: "eth1", Group: "239.2.2.2", Port: 6000, SourcePort: 5001},
				{Interface: "eth2", Group: "ff3e::1", Port: 6000, SourcePort: 65535},
			}},
		{name: "preserve source on all", in: "239.2.2.2:6000:eth1,239.2.2.3:6000:eth1", ttl: 9, keep: true,
			want: []ruleset.Output{
				{Interface: "eth1", Group: "239.2.2.2", Port: 6000, TTL: 9, PreserveSource: true},
				{Interface: "eth1", Group: "239.2.2.3", Port: 6000, TTL: 9, PreserveSource: true},
			}},
		{name: "source port not a number", in: "239.2.2.2:6000:eth1:x",
			wantErr: `--outputs item 1 "239.2.2.2:6000:eth1:x": source port "x" is not a number`},
		{name: "source port zero", in: "[ff3e::1]:6000:eth1:0",
			wantErr: `--outputs item 1 "[ff3e::1]:6000:eth1:0": source port 0 is out of range 1..65535`},
		{name: "source port empty", in: "239.2.2.2:6000:eth1:",
			wantErr: `--outputs item 1 "239.2.2.2:6000:eth1:": source port "" is not a number`},
		{name: "too many fields", in: "239.2.2.2:6000:eth1:5001:x",
			wantErr: `--outputs item 1 "239.2.2.2:6000:eth1:5001:x": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "too many fields after IPv6", in: "[ff3e::1]:6000:eth1:5001:x",
			wantErr: `--outputs item 1 "[ff3e::1]:6000:eth1:5001:x": source port "5001:x" is not a number`},
		{name: "address kept as written", in: "[FF3E:0::1]:1:e",
			want: []ruleset.Output{{Interface: "e", Group: "FF3E:0::1", Port: 1}}},
		{name: "port not a number", in: "239.1.1.1:6000:eth1,239.2.2.2:x:eth1",
			wantErr: `--outputs item 2 "239.2.2.2:x:eth1": port "x" is not a number`},
		{name: "port empty", in: "239.2.2.2::eth1",
			wantErr: `--outputs item 1 "239.2.2.2::eth1": port "" is not a number`},
		{name: "port zero", in: "239.2.2.2:0:eth1",
			wantErr: `--outputs item 1 "239.2.2.2:0:eth1": port 0 is out of range 1..65535`},
		{name: "port too large", in: "[ff3e::1]:65536:eth1",
			wantErr: `--outputs item 1 "[ff3e::1]:65536:eth1": port 65536 is out of range 1..65535`},
		{name: "no interface", in: "239.2.2.2:6000",
			wantErr: `--outputs item 1 "239.2.2.2:6000": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "group only", in: "239.2.2.2",
			wantErr: `--outputs item 1 "239.2.2.2": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "empty interface", in: "239.2.2.2:6000:",
			wantErr: `--outputs item 1 "239.2.2.2:6000:": interface is empty`},
		{name: "empty item after comma", in: "239.2.2.2:6000:eth1,",
			wantErr: `--outputs item 2 "": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "empty value", in: "",
			wantErr: `--outputs item 1 "": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "bad IPv4 group", in: "239.2.2:6000:eth1",
			wantErr: `--outputs item 1 "239.2.2:6000:eth1": group "239.2.2" is not an IP address`},
		{name: "host name", in: "feed.example:6000:eth1",
			wantErr: `--outputs item 1 "feed.example:6000:eth1": group "feed.example" is not an IP address`},
		{name: "IPv6 without brackets", in: "ff3e::1:6000:eth1",
			wantErr: `--outputs item 1 "ff3e::1:6000:eth1": IPv6 group must be in brackets: [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "unclosed bracket", in: "[ff3e::1:6000:eth1",
			wantErr: `--outputs item 1 "[ff3e::1:6000:eth1": missing "]" after the IPv6 group`},
		{name: "IPv4 in brackets", in: "[239.2.2.2]:6000:eth1",
			wantErr: `--outputs item 1 "[239.2.2.2]:6000:eth1": group "239.2.2.2" is not an IPv6 address`},
		{name: "bad IPv6 group", in: "[ff3e::g]:6000:eth1",
			wantErr: `--outputs item 1 "[ff3e::g]:6000:eth1": group "ff3e::g" is not an IPv6 address`},
		{name: "IPv6 without port", in: "[ff3e::1]eth1",
			wantErr: `--outputs item 1 "[ff3e::1]eth1": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
		{name: "IPv6 without interface", in: "[ff3e::1]:6000",
			wantErr: `--outputs item 1 "[ff3e::1]:6000": want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOutputs(tt.in, tt.ttl, tt.keep)
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Fatalf("error %q, want %q", gotErr, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
}
