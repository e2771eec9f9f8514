package tuning

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
)

// Socket buffer sizes the worker's sockets ask for (internal/relaysock),
// which the tuning warnings compare with the host's caps.
const (
	workerRcvBuf = relaysock.RcvBufSize
	workerSndBuf = relaysock.SndBufSize
)

// minNetdevBacklog is the net.core.netdev_max_backlog below which mcrd
// warns about interfaces that queue received packets on the per-CPU
// backlog; tune-kernel.sh sets it.
const minNetdevBacklog = 16384

// backlogDrivers are the drivers that hand received packets to the per-CPU
// backlog (netif_rx) instead of processing them in their own NAPI poll:
// veth without NAPI (its default: GRO off, no XDP) and macvlan for
// multicast and broadcast frames. RPS sends any driver's packets there.
var backlogDrivers = []string{"veth", "macvlan"}

// udpMergingFeatures are the netdev features (kernel names, as in
// ETH_SS_FEATURES) under which GRO merges plain UDP datagrams of one flow
// into one packet: udp_gro_receive in net/ipv4/udp_offload.c aggregates
// datagrams that no local socket asked to aggregate only when the device
// has NETIF_F_GRO_UDP_FWD or NETIF_F_GRO_FRAGLIST. GRO runs in the NAPI
// poll, before packet taps, so AF_PACKET sees the merged packet. Plain
// "rx-gro" (generic-receive-offload) leaves such UDP alone and costs the
// relay nothing; "rx-lro" merges TCP only on the drivers we know of.
var udpMergingFeatures = []string{"rx-udp-gro-forwarding", "rx-gro-list"}

// hostTuning is the kernel state tuningAdvice judges. readHostTuning fills
// it on Linux; tests build it by hand.
type hostTuning struct {
	// netAdmin is true when mcrd has CAP_NET_ADMIN, with which the worker's
	// SO_RCVBUFFORCE and SO_SNDBUFFORCE ignore rmem_max and wmem_max.
	netAdmin bool
	// rmemMax, wmemMax and backlog are net.core.rmem_max, wmem_max and
	// netdev_max_backlog; 0 means they could not be read (not checked).
	rmemMax, wmemMax, backlog int64
	// ifaces are the input interfaces that exist.
	ifaces []ifaceTuning
}

// ifaceTuning is what matters about one input interface.
type ifaceTuning struct {
	name string
	// features maps netdev feature names to whether they are active; nil
	// when they could not be read (not checked).
	features map[string]bool
	// driver is the ethtool driver name ("veth", "ixgbe"), "" if unknown.
	driver string
	// rps is true when Receive Packet Steering is on for a receive queue.
	rps bool
}

// Check warns, once per input interface, about the host settings that
// would cost packets on it (tuningAdvice), when the first rule on that
// interface reaches the workers: however the rule arrived (--config at
// start, mcrctl add, config load, SIGHUP), and only once the interface
// exists, since that is when a rule is sent. A warning about a host-wide
// setting (the socket buffer caps) is given once for the daemon. It is not
// safe for concurrent use: the supervisor calls Rules with the ruleset's
// lock held.
type Check struct {
	log *slog.Logger
	// read reads the host's state for the named input interfaces
	// (readHostTuning); tests fake it.
	read func(ifaces []string) hostTuning
	// script names tune-kernel.sh in the warnings (tuneScript).
	script  string
	checked map[string]bool // input interfaces already checked
	warned  map[string]bool // warnings already logged
}

// NewCheck returns the check of this host, logging to log and naming the
// installed tune-kernel.sh.
func NewCheck(log *slog.Logger) *Check {
	return newCheck(log, readHostTuning, installedTuneScript())
}

func newCheck(log *slog.Logger, read func([]string) hostTuning, script string) *Check {
	return &Check{log: log, read: read, script: script,
		checked: map[string]bool{}, warned: map[string]bool{}}
}

// Rules checks the input interfaces of add, rules just sent to the
// workers, that no rule sent before used.
func (c *Check) Rules(add []controlproto.WorkerRule) {
	var fresh []string
	for _, r := range add {
		if name := r.Input.Interface; !c.checked[name] {
			c.checked[name] = true
			fresh = append(fresh, name)
		}
	}
	if len(fresh) == 0 {
		return
	}
	for _, w := range tuningAdvice(c.read(fresh), c.script) {
		if !c.warned[w] {
			c.warned[w] = true
			c.log.Warn(w)
		}
	}
}

// tuneScript is how the warnings name tune-kernel.sh on this host, found
// from mcrd's own path exe: `make install` puts mcrd in PREFIX/bin and the
// script in PREFIX/share/mcr, and `make build` puts mcrd in bin/ of the
// source tree, whose scripts/ holds it. When neither is there it names the
// installed path with PREFIX left for the reader to fill in.
func tuneScript(exe string, exists func(path string) bool) string {
	if exe != "" {
		prefix := filepath.Dir(filepath.Dir(exe))
		for _, p := range []string{
			filepath.Join(prefix, "share", "mcr", "tune-kernel.sh"),
			filepath.Join(prefix, "scripts", "tune-kernel.sh"),
		} {
			if exists(p) {
				return p
			}
		}
	}
	return "PREFIX/share/mcr/tune-kernel.sh"
}

// installedTuneScript is tuneScript for the running mcrd.
func installedTuneScript() string {
	exe, err := os.Executable()
	if err != nil {
		exe = ""
	}
	return tuneScript(exe, func(p string) bool {
		info, err := os.Stat(p)
		return err == nil && info.Mode().IsRegular()
	})
}

// tuningAdvice returns one warning per host setting that will cost packets,
// each saying what it costs and how to fix it; script names tune-kernel.sh.
func tuningAdvice(h hostTuning, script string) []string {
	var warns []string
	for _, it := range h.ifaces {
		if w := groWarning(it, script); w != "" {
			warns = append(warns, w)
		}
	}
	if !h.netAdmin {
		if h.rmemMax > 0 && h.rmemMax < workerRcvBuf {
			warns = append(warns, fmt.Sprintf("net.core.rmem_max is %d and mcrd lacks CAP_NET_ADMIN, so each AF_PACKET input socket gets a %s receive buffer instead of %s: "+
				"a burst the worker cannot take at once overflows it and is lost (kernel_drops); "+
				"fix: sysctl -w net.core.rmem_max=%d (%s), or give mcrd CAP_NET_ADMIN",
				h.rmemMax, size(2*h.rmemMax), size(2*workerRcvBuf), workerRcvBuf, script))
		}
		if h.wmemMax > 0 && h.wmemMax < workerSndBuf {
			warns = append(warns, fmt.Sprintf("net.core.wmem_max is %d and mcrd lacks CAP_NET_ADMIN, so each output socket gets a %s send buffer instead of %s: "+
				"a burst to an output fills it and the datagrams that do not fit are dropped (egress_errors and the output's errors); "+
				"fix: sysctl -w net.core.wmem_max=%d (%s), or give mcrd CAP_NET_ADMIN",
				h.wmemMax, size(2*h.wmemMax), size(2*workerSndBuf), workerSndBuf, script))
		}
	}
	if w := backlogWarning(h, script); w != "" {
		warns = append(warns, w)
	}
	return warns
}

// groWarning warns when GRO merges UDP datagrams on an input interface.
func groWarning(it ifaceTuning, script string) string {
	if !it.features["rx-gro"] {
		return "" // GRO off: no software GRO at all (netif_elide_gro)
	}
	var on []string
	for _, f := range udpMergingFeatures {
		if it.features[f] {
			on = append(on, f)
		}
	}
	if len(on) == 0 {
		return ""
	}
	return fmt.Sprintf("input interface %s has GRO with %s on: the kernel merges consecutive UDP datagrams of a stream before AF_PACKET sees them, "+
		"so mcr relays several datagrams as one oversized, IP-fragmented datagram that receivers cannot split again; "+
		"fix: ethtool -K %s %s (%s %s)",
		it.name, strings.Join(on, " and "), it.name, offArgs(on), script, it.name)
}

// offArgs returns the ethtool -K arguments that switch features off.
func offArgs(features []string) string {
	var b strings.Builder
	for i, f := range features {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f + " off")
	}
	return b.String()
}

// backlogWarning warns when input interfaces use the per-CPU backlog and
// net.core.netdev_max_backlog is small.
func backlogWarning(h hostTuning, script string) string {
	if h.backlog <= 0 || h.backlog >= minNetdevBacklog {
		return ""
	}
	var users []string
	for _, it := range h.ifaces {
		switch {
		case it.rps:
			users = append(users, it.name+" (RPS)")
		case slices.Contains(backlogDrivers, it.driver):
			users = append(users, it.name+" ("+it.driver+")")
		}
	}
	if len(users) == 0 {
		return ""
	}
	return fmt.Sprintf("net.core.netdev_max_backlog is %d and input interface %s queues received packets on the per-CPU backlog: "+
		"a burst of more than %d packets per CPU is dropped before AF_PACKET sees it (column 2 of /proc/net/softnet_stat, not kernel_drops); "+
		"fix: sysctl -w net.core.netdev_max_backlog=%d (%s)",
		h.backlog, strings.Join(users, ", "), h.backlog, minNetdevBacklog, script)
}

// size formats a byte count as KiB or MiB.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n>>10, 10) + " KiB"
}

// parseSysctlInt parses the contents of an integer /proc/sys file.
func parseSysctlInt(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse sysctl value %q: %w", s, err)
	}
	return v, nil
}

// rpsMaskSet reports whether a /sys/class/net/IF/queues/rx-N/rps_cpus mask
// ("00000000,00000003") names any CPU.
func rpsMaskSet(mask string) bool {
	return strings.ContainsFunc(strings.TrimSpace(mask), func(r rune) bool { return r != '0' && r != ',' })
}

// ethtool string and feature block layouts (include/uapi/linux/ethtool.h).
const (
	ethGStringLen     = 32 // ETH_GSTRING_LEN: each string, NUL-padded
	featureBlockSize  = 16 // struct ethtool_get_features_block: 4 × u32
	featureBlockWords = 32 // features per block
	activeWordOffset  = 8  // .active, after .available and .requested
)

// parseFeatures maps each feature name to whether it is active. names holds
// n ETH_GSTRING_LEN-byte strings (the data of ETHTOOL_GSTRINGS for
// ETH_SS_FEATURES); blocks holds the ethtool_get_features_block array of
// ETHTOOL_GFEATURES, in which feature i is bit i%32 of block i/32.
func parseFeatures(names, blocks []byte, n int) (map[string]bool, error) {
	if len(names) < n*ethGStringLen {
		return nil, fmt.Errorf("parse feature names: %d bytes for %d names", len(names), n)
	}
	if need := (n + featureBlockWords - 1) / featureBlockWords * featureBlockSize; len(blocks) < need {
		return nil, fmt.Errorf("parse feature blocks: %d bytes for %d features, need %d", len(blocks), n, need)
	}
	features := make(map[string]bool, n)
	for i := range n {
		raw := names[i*ethGStringLen : (i+1)*ethGStringLen]
		name, _, _ := strings.Cut(string(raw), "\x00")
		if name == "" {
			continue // unused bit
		}
		block := blocks[i/featureBlockWords*featureBlockSize:]
		active := binary.NativeEndian.Uint32(block[activeWordOffset:])
		features[name] = active&(1<<(i%featureBlockWords)) != 0
	}
	return features, nil
}
