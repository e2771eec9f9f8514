package tuning

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/syncbuf"
	"github.com/mcrelay/mcr/ruleset"
)

func TestTuningAdvice(t *testing.T) {
	const (
		gro = "input interface eth0 has GRO with rx-udp-gro-forwarding on: the kernel merges consecutive UDP datagrams of a stream before AF_PACKET sees them, " +
			"so mcr relays several datagrams as one oversized, IP-fragmented datagram that receivers cannot split again; " +
			"fix: ethtool -K eth0 rx-udp-gro-forwarding off (/usr/share/mcr/tune-kernel.sh eth0)"
		groBoth = "input interface eth1 has GRO with rx-udp-gro-forwarding and rx-gro-list on: the kernel merges consecutive UDP datagrams of a stream before AF_PACKET sees them, " +
			"so mcr relays several datagrams as one oversized, IP-fragmented datagram that receivers cannot split again; " +
			"fix: ethtool -K eth1 rx-udp-gro-forwarding off rx-gro-list off (/usr/share/mcr/tune-kernel.sh eth1)"
		rmem = "net.core.rmem_max is 212992 and mcrd lacks CAP_NET_ADMIN, so each AF_PACKET input socket gets a 416 KiB receive buffer instead of 16 MiB: " +
			"a burst the worker cannot take at once overflows it and is lost (kernel_drops); " +
			"fix: sysctl -w net.core.rmem_max=8388608 (/usr/share/mcr/tune-kernel.sh), or give mcrd CAP_NET_ADMIN"
		wmem = "net.core.wmem_max is 212992 and mcrd lacks CAP_NET_ADMIN, so each output socket gets a 416 KiB send buffer instead of 8 MiB: " +
			"a burst to an output fills it and the datagrams that do not fit are dropped (egress_errors and the output's errors); " +
			"fix: sysctl -w net.core.wmem_max=4194304 (/usr/share/mcr/tune-kernel.sh), or give mcrd CAP_NET_ADMIN"
		backlog = "net.core.netdev_max_backlog is 1000 and input interface veth0 (veth), eth2 (RPS) queues received packets on the per-CPU backlog: " +
			"a burst of more than 1000 packets per CPU is dropped before AF_PACKET sees it (column 2 of /proc/net/softnet_stat, not kernel_drops); " +
			"fix: sysctl -w net.core.netdev_max_backlog=16384 (/usr/share/mcr/tune-kernel.sh)"
	)
	defaults := hostTuning{rmemMax: 212992, wmemMax: 212992, backlog: 1000}
	with := func(h hostTuning, f func(*hostTuning)) hostTuning { f(&h); return h }
	udpGRO := map[string]bool{"rx-gro": true, "rx-udp-gro-forwarding": true, "rx-gro-list": false}
	for _, tc := range []struct {
		name string
		host hostTuning
		want []string
	}{
		{"root with defaults and a plain NIC", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "eth0", driver: "ixgbe", features: map[string]bool{"rx-gro": true, "rx-lro": true}}}
		}), nil},
		{"UDP GRO forwarding on", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "eth0", features: udpGRO}}
		}), []string{gro}},
		{"UDP GRO features but GRO off", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "eth0", features: map[string]bool{"rx-gro": false, "rx-udp-gro-forwarding": true, "rx-gro-list": true}}}
		}), nil},
		{"both UDP merging features", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "eth1", features: map[string]bool{"rx-gro": true, "rx-udp-gro-forwarding": true, "rx-gro-list": true}}}
		}), []string{groBoth}},
		{"features unknown", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "eth0"}}
		}), nil},
		{"small buffer caps without CAP_NET_ADMIN", defaults, []string{rmem, wmem}},
		{"buffer caps large enough without CAP_NET_ADMIN", with(defaults, func(h *hostTuning) {
			h.rmemMax, h.wmemMax = workerRcvBuf, workerSndBuf
		}), nil},
		{"buffer caps unreadable", hostTuning{backlog: 1000}, nil},
		{"small backlog used by veth and RPS", with(defaults, func(h *hostTuning) {
			h.netAdmin = true
			h.ifaces = []ifaceTuning{{name: "veth0", driver: "veth"}, {name: "eth1", driver: "ixgbe"}, {name: "eth2", driver: "ixgbe", rps: true}}
		}), []string{backlog}},
		{"large backlog used by veth", with(defaults, func(h *hostTuning) {
			h.netAdmin, h.backlog = true, minNetdevBacklog
			h.ifaces = []ifaceTuning{{name: "veth0", driver: "veth"}}
		}), nil},
		{"everything at once, in order", with(defaults, func(h *hostTuning) {
			h.ifaces = []ifaceTuning{{name: "eth0", features: udpGRO}, {name: "veth0", driver: "veth"}, {name: "eth2", rps: true}}
		}), []string{gro, rmem, wmem, backlog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tuningAdvice(tc.host, "/usr/share/mcr/tune-kernel.sh")); diff != "" {
				t.Errorf("tuningAdvice (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTuningCheck feeds rules to the check the way the master does,
// whatever their origin, and checks that each input interface is checked
// once, when its first rule is sent, and each warning logged once.
func TestTuningCheck(t *testing.T) {
	const script = "/usr/share/mcr/tune-kernel.sh"
	udpGRO := map[string]bool{"rx-gro": true, "rx-udp-gro-forwarding": true}
	var reads [][]string
	read := func(ifaces []string) hostTuning {
		reads = append(reads, ifaces)
		h := hostTuning{rmemMax: 212992, wmemMax: workerSndBuf}
		for _, name := range ifaces {
			h.ifaces = append(h.ifaces, ifaceTuning{name: name, features: udpGRO})
		}
		return h
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	c := newCheck(log, read, script)
	rule := func(id, in string) controlproto.WorkerRule {
		return controlproto.WorkerRule{Rule: ruleset.Rule{ID: id, Input: ruleset.Input{Interface: in}}, InputIfIndex: 2}
	}

	c.Rules([]controlproto.WorkerRule{rule("a", "eth0"), rule("b", "eth0")}) // --config at start
	c.Rules([]controlproto.WorkerRule{rule("a", "eth0")})                    // a changed rule
	c.Rules(nil)                                                             // a removal
	c.Rules([]controlproto.WorkerRule{rule("c", "eth1")})                    // mcrctl add, later

	if diff := cmp.Diff([][]string{{"eth0"}, {"eth1"}}, reads); diff != "" {
		t.Errorf("interfaces checked (-want +got):\n%s", diff)
	}
	gro := func(name string) string {
		return "input interface " + name + " has GRO with rx-udp-gro-forwarding on: the kernel merges consecutive UDP datagrams of a stream before AF_PACKET sees them, " +
			"so mcr relays several datagrams as one oversized, IP-fragmented datagram that receivers cannot split again; " +
			"fix: ethtool -K " + name + " rx-udp-gro-forwarding off (" + script + " " + name + ")"
	}
	rmem := "net.core.rmem_max is 212992 and mcrd lacks CAP_NET_ADMIN, so each AF_PACKET input socket gets a 416 KiB receive buffer instead of 16 MiB: " +
		"a burst the worker cannot take at once overflows it and is lost (kernel_drops); " +
		"fix: sysctl -w net.core.rmem_max=8388608 (" + script + "), or give mcrd CAP_NET_ADMIN"
	var want strings.Builder
	for _, w := range []string{gro("eth0"), rmem, gro("eth1")} {
		fmt.Fprintf(&want, "level=WARN msg=%q\n", w)
	}
	if diff := cmp.Diff(want.String(), logs.String()); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestTuneScript(t *testing.T) {
	for _, tc := range []struct {
		name, exe string
		present   []string
		want      string
	}{
		{"installed", "/usr/local/bin/mcrd", []string{"/usr/local/share/mcr/tune-kernel.sh"}, "/usr/local/share/mcr/tune-kernel.sh"},
		{"packaged", "/usr/bin/mcrd", []string{"/usr/share/mcr/tune-kernel.sh"}, "/usr/share/mcr/tune-kernel.sh"},
		{"source tree", "/home/op/mcr/bin/mcrd", []string{"/home/op/mcr/scripts/tune-kernel.sh"}, "/home/op/mcr/scripts/tune-kernel.sh"},
		{"neither", "/tmp/mcrd", nil, "PREFIX/share/mcr/tune-kernel.sh"},
		{"unknown executable", "", nil, "PREFIX/share/mcr/tune-kernel.sh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tuneScript(tc.exe, func(p string) bool { return slices.Contains(tc.present, p) })
			if got != tc.want {
				t.Errorf("tuneScript(%q) = %q, want %q", tc.exe, got, tc.want)
			}
		})
	}
}

func TestParseSysctlInt(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"212992\n", 212992, ""},
		{" 1000 ", 1000, ""},
		{"", 0, `parse sysctl value "": strconv.ParseInt: parsing "": invalid syntax`},
		{"4096\t87380\t6291456\n", 0, `parse sysctl value "4096\t87380\t6291456\n": strconv.ParseInt: parsing "4096\t87380\t6291456": invalid syntax`},
	} {
		got, err := parseSysctlInt(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.wantErr {
			t.Errorf("parseSysctlInt(%q) = %d, %q; want %d, %q", tc.in, got, gotErr, tc.want, tc.wantErr)
		}
	}
}

func TestRPSMaskSet(t *testing.T) {
	for mask, want := range map[string]bool{
		"0\n":                 false,
		"00000000,00000000\n": false,
		"00000000,00000001\n": true,
		"f":                   true,
		"":                    false,
	} {
		if got := rpsMaskSet(mask); got != want {
			t.Errorf("rpsMaskSet(%q) = %v, want %v", mask, got, want)
		}
	}
}

// featureData builds ETHTOOL_GSTRINGS and ETHTOOL_GFEATURES answers for
// names, with the features at the indexes in active set.
func featureData(names []string, active ...int) (strs, blocks []byte) {
	strs = make([]byte, len(names)*ethGStringLen)
	for i, n := range names {
		copy(strs[i*ethGStringLen:], n)
	}
	blocks = make([]byte, (len(names)+31)/32*featureBlockSize)
	for _, i := range active {
		off := i/32*featureBlockSize + activeWordOffset
		binary.NativeEndian.PutUint32(blocks[off:], binary.NativeEndian.Uint32(blocks[off:])|1<<(i%32))
		// .available and .requested bits must not be taken for .active.
		binary.NativeEndian.PutUint32(blocks[i/32*featureBlockSize:], 0xffffffff)
	}
	return strs, blocks
}

func TestParseFeatures(t *testing.T) {
	names := make([]string, 40)
	for i := range names {
		names[i] = "f" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	names[3] = "rx-gro"
	names[7] = "" // an unused bit has no name
	names[33] = "rx-udp-gro-forwarding"
	names[34] = "rx-gro-list"
	strs, blocks := featureData(names, 3, 33)

	got, err := parseFeatures(strs, blocks, len(names))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for i, n := range names {
		if n != "" {
			want[n] = i == 3 || i == 33
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseFeatures (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name         string
		strs, blocks []byte
		wantErr      string
	}{
		{"names short", strs[:len(strs)-1], blocks, "parse feature names: 1279 bytes for 40 names"},
		{"blocks short", strs, blocks[:16], "parse feature blocks: 16 bytes for 40 features, need 32"},
	} {
		if _, err := parseFeatures(tc.strs, tc.blocks, len(names)); err == nil || err.Error() != tc.wantErr {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
