package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NamespaceCounters are kernel counters of the network namespace the
// daemon and its workers run in, for losses that happen before any worker
// sees a packet. They are the kernel's, read from /proc/net/snmp at each
// GetStats: they cover the whole namespace, not only mcr's traffic, and
// count from the namespace's creation, not from the daemon's start.
//
// IPv4 reassembly: the workers' sockets have the kernel reassemble IPv4
// fragments before they see them (PACKET_FANOUT_FLAG_DEFRAG). A datagram
// whose fragments do not all arrive within net.ipv4.ipfrag_time (30 s) is
// dropped there, unseen by any worker, and counted as a failure and a
// timeout. Each reassembly queue that held a fragment of it counts: the
// relay's, and the kernel's own for local delivery when the host has
// joined the group (mcr joins its input groups), so one lost datagram of a
// relayed stream usually counts twice.
type NamespaceCounters struct {
	// IPReasmReqds counts fragments queued for reassembly (ReasmReqds).
	IPReasmReqds uint64 `json:"ip_reasm_reqds"`
	// IPReasmOKs counts datagrams reassembled (ReasmOKs).
	IPReasmOKs uint64 `json:"ip_reasm_oks"`
	// IPReasmFails counts datagrams given up (ReasmFails): timed out,
	// out of reassembly memory (net.ipv4.ipfrag_high_thresh), or with
	// fragments that contradict each other.
	IPReasmFails uint64 `json:"ip_reasm_fails"`
	// IPReasmTimeout counts the failures that timed out (ReasmTimeout).
	IPReasmTimeout uint64 `json:"ip_reasm_timeout"`
}

// ParseSNMP reads the IPv4 reassembly counters from the text of
// /proc/net/snmp, where each protocol has a line of names and a line of
// values, both starting with its name ("Ip:").
func ParseSNMP(text []byte) (NamespaceCounters, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		return ipCounters(names, fields)
	}
	if err := sc.Err(); err != nil {
		return NamespaceCounters{}, fmt.Errorf("read snmp counters: %w", err)
	}
	return NamespaceCounters{}, fmt.Errorf("read snmp counters: no Ip: names and values")
}

func ipCounters(names, values []string) (NamespaceCounters, error) {
	if len(names) != len(values) {
		return NamespaceCounters{}, fmt.Errorf("read snmp counters: %d Ip: names but %d values", len(names), len(values))
	}
	var c NamespaceCounters
	for _, f := range []struct {
		name string
		v    *uint64
	}{
		{"ReasmReqds", &c.IPReasmReqds},
		{"ReasmOKs", &c.IPReasmOKs},
		{"ReasmFails", &c.IPReasmFails},
		{"ReasmTimeout", &c.IPReasmTimeout},
	} {
		i := slices.Index(names, f.name)
		if i < 0 {
			return NamespaceCounters{}, fmt.Errorf("read snmp counters: no Ip: %s", f.name)
		}
		v, err := strconv.ParseUint(values[i], 10, 64)
		if err != nil {
			return NamespaceCounters{}, fmt.Errorf("read snmp counters: Ip: %s: %w", f.name, err)
		}
		*f.v = v
	}
	return c, nil
}
