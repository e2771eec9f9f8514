package ruleset

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// validRule returns a fresh valid rule; tests change one thing in it.
func validRule() Rule {
	return Rule{
		ID:    "market-a",
		Name:  "market data A",
		Input: Input{Interface: "eth0", Group: "239.1.1.1", Port: 5000, Source: "10.0.0.9"},
		Outputs: []Output{
			{Interface: "eth1", Group: "239.2.2.2", Port: 6000, TTL: 8, Source: "10.1.0.1"},
			{Interface: "eth1", Group: "10.1.0.50", Port: 6000},
		},
	}
}

func manyOutputs(n int) []Output {
	outs := make([]Output, n)
	for i := range outs {
		outs[i] = Output{Interface: "eth1", Group: "239.2.2.2", Port: 1 + i}
	}
	return outs
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Rule)
		want   string // "" for valid
	}{
		{"valid", func(r *Rule) {}, ""},
		{"valid without sources and ttl", func(r *Rule) {
			r.Input.Source = ""
			r.Outputs = []Output{{Interface: "eth1", Group: "239.2.2.2", Port: 6000}}
		}, ""},
		{"valid IPv6 input to IPv4 output", func(r *Rule) {
			r.Input = Input{Interface: "eth0", Group: "FF3E::1", Port: 5000, Source: "2001:db8::9"}
		}, ""},
		{"valid unicast input", func(r *Rule) { r.Input.Group = "10.0.0.1" }, ""},
		{"valid same group on another interface", func(r *Rule) {
			r.Outputs[0] = Output{Interface: "eth2", Group: "239.1.1.1", Port: 5000}
		}, ""},
		{"valid same group and interface, other port", func(r *Rule) {
			r.Outputs[0] = Output{Interface: "eth0", Group: "239.1.1.1", Port: 5001}
		}, ""},
		{"valid interface name of 15 bytes", func(r *Rule) { r.Input.Interface = "abcdefghijklmno" }, ""},
		{"valid interface names with dots and dashes", func(r *Rule) {
			r.Input.Interface = "eth0.100"
			r.Outputs[0].Interface = "br-lan_1@x"
		}, ""},
		{"valid id of 64 characters", func(r *Rule) { r.ID = strings.Repeat("a", 64) }, ""},
		{"valid id characters", func(r *Rule) { r.ID = "A-z_0.9:x" }, ""},
		{"valid ttl 0 and 255", func(r *Rule) { r.Outputs[0].TTL = 255; r.Outputs[1].TTL = 0 }, ""},
		{"valid port 65535", func(r *Rule) { r.Input.Port = 65535 }, ""},
		{"valid 1024 outputs", func(r *Rule) { r.Outputs = manyOutputs(MaxOutputs) }, ""},

		{"empty id", func(r *Rule) { r.ID = "" },
			`id: "" is not a valid id (1..64 characters of A-Za-z0-9._:-)`},
		{"id too long", func(r *Rule) { r.ID = strings.Repeat("a", 65) },
			`id: "` + strings.Repeat("a", 65) + `" is not a valid id (1..64 characters of A-Za-z0-9._:-)`},
		{"id with space", func(r *Rule) { r.ID = "x y" },
			`id: "x y" is not a valid id (1..64 characters of A-Za-z0-9._:-)`},
		{"id with slash", func(r *Rule) { r.ID = "a/b" },
			`id: "a/b" is not a valid id (1..64 characters of A-Za-z0-9._:-)`},

		{"input interface empty", func(r *Rule) { r.Input.Interface = "" },
			`input.interface: is required`},
		{"input interface with slash", func(r *Rule) { r.Input.Interface = "eth/0" },
			`input.interface: "eth/0" is not a valid interface name`},
		{"input interface with colon", func(r *Rule) { r.Input.Interface = "eth0:1" },
			`input.interface: "eth0:1" is not a valid interface name`},
		{"input interface with space", func(r *Rule) { r.Input.Interface = "eth 0" },
			`input.interface: "eth 0" is not a valid interface name`},
		{"input interface with tab", func(r *Rule) { r.Input.Interface = "eth\t0" },
			`input.interface: "eth\t0" is not a valid interface name`},
		{"input interface with NUL", func(r *Rule) { r.Input.Interface = "eth\x000" },
			`input.interface: "eth\x000" is not a valid interface name`},
		{"input interface with byte 0xA0 (kernel isspace)", func(r *Rule) { r.Input.Interface = "eth\u00e0" },
			`input.interface: "ethà" is not a valid interface name`},
		{"input interface dot", func(r *Rule) { r.Input.Interface = "." },
			`input.interface: "." is not a valid interface name`},
		{"input interface dot dot", func(r *Rule) { r.Input.Interface = ".." },
			`input.interface: ".." is not a valid interface name`},
		{"input interface of 16 bytes", func(r *Rule) { r.Input.Interface = "abcdefghijklmnop" },
			`input.interface: "abcdefghijklmnop" is not a valid interface name`},

		{"input group empty", func(r *Rule) { r.Input.Group = "" },
			`input.group: is required`},
		{"input group malformed", func(r *Rule) { r.Input.Group = "1.2.3" },
			`input.group: "1.2.3" is not an IP address`},
		{"input group host name", func(r *Rule) { r.Input.Group = "localhost" },
			`input.group: "localhost" is not an IP address`},
		{"input group with spaces", func(r *Rule) { r.Input.Group = " 239.1.1.1" },
			`input.group: " 239.1.1.1" is not an IP address`},
		{"input group with zone", func(r *Rule) { r.Input.Group = "ff02::1%eth0"; r.Input.Source = "" },
			`input.group: "ff02::1%eth0" has a zone; the interface field selects the link`},
		{"input group unspecified IPv4", func(r *Rule) { r.Input.Group = "0.0.0.0" },
			`input.group: "0.0.0.0" is the unspecified address`},
		{"input group unspecified IPv6", func(r *Rule) { r.Input.Group = "::" },
			`input.group: "::" is the unspecified address`},

		{"input port 0", func(r *Rule) { r.Input.Port = 0 }, `input.port: must be 1..65535`},
		{"input port negative", func(r *Rule) { r.Input.Port = -1 }, `input.port: must be 1..65535`},
		{"input port 65536", func(r *Rule) { r.Input.Port = 65536 }, `input.port: must be 1..65535`},

		{"input source malformed", func(r *Rule) { r.Input.Source = "10.0.0" },
			`input.source: "10.0.0" is not an IP address`},
		{"input source with zone", func(r *Rule) {
			r.Input.Group = "ff3e::1"
			r.Input.Source = "fe80::1%eth0"
		}, `input.source: "fe80::1%eth0" has a zone; the interface field selects the link`},
		{"input source multicast", func(r *Rule) { r.Input.Source = "239.9.9.9" },
			`input.source: must be a unicast address of the same family as input.group`},
		{"input source unspecified", func(r *Rule) { r.Input.Source = "0.0.0.0" },
			`input.source: must be a unicast address of the same family as input.group`},
		{"input source broadcast", func(r *Rule) { r.Input.Source = "255.255.255.255" },
			`input.source: must be a unicast address of the same family as input.group`},
		{"input source IPv6 for IPv4 group", func(r *Rule) { r.Input.Source = "2001:db8::1" },
			`input.source: must be a unicast address of the same family as input.group`},
		{"input source IPv4 for IPv6 group", func(r *Rule) { r.Input.Group = "ff3e::1" },
			`input.source: must be a unicast address of the same family as input.group`},

		{"no outputs", func(r *Rule) { r.Outputs = nil },
			`outputs: at least one output is required`},
		{"1025 outputs", func(r *Rule) { r.Outputs = manyOutputs(MaxOutputs + 1) },
			`outputs: 1025 outputs, at most 1024`},

		{"output interface empty", func(r *Rule) { r.Outputs[1].Interface = "" },
			`outputs[1].interface: is required`},
		{"output interface invalid", func(r *Rule) { r.Outputs[1].Interface = "eth/1" },
			`outputs[1].interface: "eth/1" is not a valid interface name`},
		{"output group empty", func(r *Rule) { r.Outputs[0].Group = "" },
			`outputs[0].group: is required`},
		{"output group malformed", func(r *Rule) { r.Outputs[1].Group = "ff3e::1::2" },
			`outputs[1].group: "ff3e::1::2" is not an IP address`},
		{"output group with zone", func(r *Rule) { r.Outputs[1].Group = "fe80::1%eth1" },
			`outputs[1].group: "fe80::1%eth1" has a zone; the interface field selects the link`},
		{"output group unspecified", func(r *Rule) { r.Outputs[1].Group = "::" },
			`outputs[1].group: "::" is the unspecified address`},
		{"output port 0", func(r *Rule) { r.Outputs[1].Port = 0 },
			`outputs[1].port: must be 1..65535`},
		{"output port 70000", func(r *Rule) { r.Outputs[0].Port = 70000 },
			`outputs[0].port: must be 1..65535`},
		{"output ttl 256", func(r *Rule) { r.Outputs[0].TTL = 256 },
			`outputs[0].ttl: must be 0..255`},
		{"output ttl negative", func(r *Rule) { r.Outputs[1].TTL = -1 },
			`outputs[1].ttl: must be 0..255`},
		{"output source malformed", func(r *Rule) { r.Outputs[0].Source = "x" },
			`outputs[0].source: "x" is not an IP address`},
		{"output source multicast", func(r *Rule) { r.Outputs[0].Source = "224.0.0.1" },
			`outputs[0].source: must be a unicast address of the same family as outputs[0].group`},
		{"output source other family", func(r *Rule) { r.Outputs[1].Source = "2001:db8::1" },
			`outputs[1].source: must be a unicast address of the same family as outputs[1].group`},

		{"valid when_joined", func(r *Rule) { r.Outputs[0].WhenJoined = true }, ""},
		{"when_joined on a unicast output", func(r *Rule) { r.Outputs[1].WhenJoined = true },
			`outputs[1].when_joined: needs a multicast group: only multicast groups have listeners`},

		{"valid source_port 1 and 65535", func(r *Rule) { r.Outputs[0].SourcePort = 1; r.Outputs[1].SourcePort = 65535 }, ""},
		{"output source_port negative", func(r *Rule) { r.Outputs[1].SourcePort = -1 },
			`outputs[1].source_port: must be 1..65535`},
		{"output source_port 65536", func(r *Rule) { r.Outputs[0].SourcePort = 65536 },
			`outputs[0].source_port: must be 1..65535`},
		{"valid preserve_source", func(r *Rule) { r.Outputs[1].PreserveSource = true }, ""},
		{"valid preserve_source IPv6", func(r *Rule) {
			r.Input = Input{Interface: "eth0", Group: "ff3e::1", Port: 5000}
			r.Outputs = []Output{{Interface: "eth1", Group: "ff3e::2", Port: 6000, TTL: 4, PreserveSource: true}}
		}, ""},
		{"preserve_source with a source", func(r *Rule) { r.Outputs[0].PreserveSource = true },
			`outputs[0].preserve_source: excludes source and source_port: the datagrams keep the input's source`},
		{"preserve_source with a source_port", func(r *Rule) {
			r.Outputs[1].PreserveSource = true
			r.Outputs[1].SourcePort = 5001
		}, `outputs[1].preserve_source: excludes source and source_port: the datagrams keep the input's source`},
		{"preserve_source from IPv4 to IPv6", func(r *Rule) {
			r.Outputs[1] = Output{Interface: "eth1", Group: "ff3e::2", Port: 6000, PreserveSource: true}
		}, `outputs[1].preserve_source: needs a group of the input's family: an IPv4 source cannot leave in an IPv6 datagram`},
		{"preserve_source from IPv6 to IPv4", func(r *Rule) {
			r.Input = Input{Interface: "eth0", Group: "ff3e::1", Port: 5000}
			r.Outputs[1].PreserveSource = true
		}, `outputs[1].preserve_source: needs a group of the input's family: an IPv6 source cannot leave in an IPv4 datagram`},
		{"valid outputs sharing a source port and address", func(r *Rule) {
			r.Outputs[0].SourcePort = 5001
			r.Outputs[1].SourcePort = 5001
			r.Outputs[1].Source = "10.1.0.1"
		}, ""},
		{"valid outputs on one source port from two addresses", func(r *Rule) {
			r.Outputs[0].SourcePort = 5001
			r.Outputs[1].SourcePort = 5001
			r.Outputs[1].Source = "10.1.0.2"
		}, ""},
		{"valid source port on two interfaces and families", func(r *Rule) {
			r.Outputs[0].SourcePort = 5001
			r.Outputs[1] = Output{Interface: "eth2", Group: "239.2.2.2", Port: 6000, SourcePort: 5001}
			r.Outputs = append(r.Outputs, Output{Interface: "eth1", Group: "ff3e::2", Port: 6000, SourcePort: 5001})
		}, ""},
		{"source port with and without address", func(r *Rule) {
			r.Outputs[0].SourcePort = 5001
			r.Outputs[1].SourcePort = 5001
		}, `outputs[1].source_port: port 5001 on eth1 is taken by outputs[0] from 10.1.0.1; ` +
			`outputs that fix one source port on one interface must name the same source address`},
		{"source port without and with address", func(r *Rule) {
			r.Outputs[0], r.Outputs[1] = r.Outputs[1], r.Outputs[0]
			r.Outputs[0].SourcePort = 5001
			r.Outputs[1].SourcePort = 5001
		}, `outputs[1].source_port: port 5001 on eth1 is taken by outputs[0] without a source address; ` +
			`outputs that fix one source port on one interface must name the same source address`},

		{"duplicate output", func(r *Rule) { r.Outputs = append(r.Outputs, r.Outputs[0]) },
			`outputs[2]: same as outputs[0]`},
		{"duplicate output differing in ttl and source", func(r *Rule) {
			r.Outputs = append(r.Outputs, Output{Interface: "eth1", Group: "239.2.2.2", Port: 6000})
		}, `outputs[2]: same as outputs[0]`},
		{"duplicate output in another spelling", func(r *Rule) {
			r.Outputs[0].Group = "ff3e::1"
			r.Outputs[0].Source = ""
			r.Outputs[1].Group = "FF3E:0:0::1"
		}, `outputs[1]: same as outputs[0]`},
		{"duplicate output IPv4-mapped", func(r *Rule) { r.Outputs[1].Group = "::ffff:239.2.2.2" },
			`outputs[1]: same as outputs[0]`},
		{"output equal to input", func(r *Rule) {
			r.Outputs[1] = Output{Interface: "eth0", Group: "239.1.1.1", Port: 5000}
		}, `outputs[1]: same as the input (would loop)`},
		{"output equal to input in another spelling", func(r *Rule) {
			r.Input = Input{Interface: "eth0", Group: "ff3e::1", Port: 5000}
			r.Outputs[0] = Output{Interface: "eth0", Group: "FF3E::0:1", Port: 5000, TTL: 3}
		}, `outputs[0]: same as the input (would loop)`},
		{"first error wins", func(r *Rule) { r.Input.Port = 0; r.Outputs = nil },
			`input.port: must be 1..65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRule()
			tt.change(&r)
			err := r.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate() error is %T, want *ValidationError", err)
			}
			if field, _, _ := strings.Cut(tt.want, ": "); verr.Field != field {
				t.Errorf("Field = %q, want %q", verr.Field, field)
			}
		})
	}
}

func TestValidateAcceptsNormalizedDefaultID(t *testing.T) {
	r := validRule()
	r.ID = ""
	r.Normalize()
	if err := r.Validate(); err != nil {
		t.Fatalf("Validate() after Normalize() = %v, want nil", err)
	}
}

func TestNormalize(t *testing.T) {
	r := Rule{
		Name:  " keep  me ",
		Input: Input{Interface: "eth0", Group: "FF3E:0::1", Port: 5000, Source: "2001:DB8:0:0::9"},
		Outputs: []Output{
			{Interface: "eth1", Group: "::ffff:239.2.2.2", Port: 6000, Source: "::FFFF:10.1.0.1"},
			{Interface: "eth1", Group: "1.2.3", Port: 6000, Source: "not an address"},
			{Interface: "eth2", Group: "0239.1.1.1", Port: 6000},
			{Interface: "eth3", Group: "fe80::1%eth3", Port: 6000},
			{Interface: "eth4", Group: " 10.0.0.1", Port: 6000},
		},
	}
	r.Normalize()
	want := Rule{
		ID:    DefaultID(Input{Interface: "eth0", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"}),
		Name:  " keep  me ",
		Input: Input{Interface: "eth0", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"},
		Outputs: []Output{
			{Interface: "eth1", Group: "239.2.2.2", Port: 6000, Source: "10.1.0.1"},
			{Interface: "eth1", Group: "1.2.3", Port: 6000, Source: "not an address"},
			{Interface: "eth2", Group: "0239.1.1.1", Port: 6000},
			{Interface: "eth3", Group: "fe80::1%eth3", Port: 6000},
			{Interface: "eth4", Group: " 10.0.0.1", Port: 6000},
		},
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("Normalize() mismatch (-want +got):\n%s", diff)
	}
}

func TestNormalizeKeepsID(t *testing.T) {
	r := validRule()
	r.Normalize()
	if r.ID != "market-a" {
		t.Errorf("ID = %q after Normalize, want %q", r.ID, "market-a")
	}
}

func TestNormalizeIsIdempotent(t *testing.T) {
	r := validRule()
	r.ID = ""
	r.Input.Group = "FF3E::00:1"
	r.Input.Source = ""
	r.Normalize()
	once := r
	once.Outputs = append([]Output(nil), r.Outputs...)
	r.Normalize()
	if diff := cmp.Diff(once, r); diff != "" {
		t.Errorf("second Normalize() changed the rule (-once +twice):\n%s", diff)
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		name string
		out  Output
		want string
	}{
		{"IPv4", Output{Interface: "eth1", Group: "239.2.2.2", Port: 6000}, "239.2.2.2:6000@eth1"},
		{"IPv6", Output{Interface: "eth1", Group: "ff3e::1", Port: 6000}, "[ff3e::1]:6000@eth1"},
		{"IPv6 not normalised", Output{Interface: "eth1", Group: "FF3E:0::1", Port: 6000}, "[ff3e::1]:6000@eth1"},
		{"IPv4-mapped", Output{Interface: "eth1", Group: "::ffff:10.1.0.50", Port: 7}, "10.1.0.50:7@eth1"},
		{"ttl and source ignored", Output{Interface: "e", Group: "10.0.0.1", Port: 1, TTL: 9, Source: "10.0.0.2"}, "10.0.0.1:1@e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.out.Destination(); got != tt.want {
				t.Errorf("Destination() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInputKey(t *testing.T) {
	base := Input{Interface: "eth0", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"}
	same := Input{Interface: "eth0", Group: "FF3E:0::1", Port: 5000, Source: "2001:DB8::0:9"}
	if base.Key() != same.Key() {
		t.Errorf("Key(%+v) != Key(%+v), want equal", base, same)
	}
	differ := map[string]Input{
		"interface": {Interface: "eth1", Group: "ff3e::1", Port: 5000, Source: "2001:db8::9"},
		"group":     {Interface: "eth0", Group: "ff3e::2", Port: 5000, Source: "2001:db8::9"},
		"port":      {Interface: "eth0", Group: "ff3e::1", Port: 5001, Source: "2001:db8::9"},
		"source":    {Interface: "eth0", Group: "ff3e::1", Port: 5000, Source: "2001:db8::8"},
		"no source": {Interface: "eth0", Group: "ff3e::1", Port: 5000},
	}
	for name, in := range differ {
		if in.Key() == base.Key() {
			t.Errorf("%s differs but Key() is equal: %+v", name, in.Key())
		}
	}
}
