package mcrctl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mcrelay/mcr/ruleset"
)

// ParseOutputs parses the value of `mcrctl add --outputs`: comma-separated
// items GROUP:PORT:INTERFACE[:SOURCE_PORT], with IPv6 groups in brackets
// ([ff3e::1]:6000:eth1:5001). ttl is set on every output, and so is
// preserve (Output.PreserveSource). The interface is the text after the
// port's colon, up to the next one if any, which is unambiguous because
// Linux interface names cannot contain one.
//
// It checks only what the syntax needs: that the group is an IP address,
// the ports numbers in 1..65535 and the interface non-empty. The daemon
// validates the rest (interface name rules, self-loops, duplicates, source
// ports other outputs hold). Errors name the 1-based item and quote it:
//
//	--outputs item 2 "239.2.2.2:x:eth1": port "x" is not a number
func ParseOutputs(s string, ttl int, preserve bool) ([]ruleset.Output, error) {
	items := strings.Split(s, ",")
	outs := make([]ruleset.Output, 0, len(items))
	for i, item := range items {
		o, err := parseOutput(item)
		if err != nil {
			return nil, fmt.Errorf("--outputs item %d %q: %w", i+1, item, err)
		}
		o.TTL, o.PreserveSource = ttl, preserve
		outs = append(outs, o)
	}
	return outs, nil
}

// parseOutput parses one GROUP:PORT:INTERFACE[:SOURCE_PORT] item.
func parseOutput(item string) (ruleset.Output, error) {
	group, rest, err := splitGroup(item)
	if err != nil {
		return ruleset.Output{}, err
	}
	port, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return ruleset.Output{}, errShape
	}
	p, err := parsePort(port)
	if err != nil {
		return ruleset.Output{}, err
	}
	ifname, sport, hasSport := strings.Cut(rest, ":")
	if ifname == "" {
		return ruleset.Output{}, errors.New("interface is empty")
	}
	o := ruleset.Output{Interface: ifname, Group: group, Port: p}
	if hasSport {
		if o.SourcePort, err = parsePort(sport); err != nil {
			return ruleset.Output{}, fmt.Errorf("source %w", err)
		}
	}
	return o, nil
}

var errShape = errors.New("want GROUP:PORT:INTERFACE[:SOURCE_PORT], IPv6 as [GROUP]:PORT:INTERFACE[:SOURCE_PORT]")

// splitGroup splits the group off an item and returns it with the
// PORT:INTERFACE[:SOURCE_PORT] rest.
func splitGroup(item string) (group, rest string, err error) {
	if strings.HasPrefix(item, "[") {
		end := strings.Index(item, "]")
		if end < 0 {
			return "", "", errors.New(`missing "]" after the IPv6 group`)
		}
		group, rest = item[1:end], item[end+1:]
		a, err := netip.ParseAddr(group)
		if err != nil || !a.Is6() {
			return "", "", fmt.Errorf("group %q is not an IPv6 address", group)
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", errShape
		}
		return group, rest[1:], nil
	}
	group, rest, _ = strings.Cut(item, ":")
	switch n := strings.Count(item, ":"); {
	case n < 2:
		return "", "", errShape
	case n > 3:
		if a, err := netip.ParseAddr(group); err == nil && a.Is4() {
			return "", "", errShape
		}
		return "", "", errors.New("IPv6 group must be in brackets: [GROUP]:PORT:INTERFACE[:SOURCE_PORT]")
	}
	if _, err := netip.ParseAddr(group); err != nil {
		return "", "", fmt.Errorf("group %q is not an IP address", group)
	}
	return group, rest, nil
}

// parsePort parses a UDP port, 1..65535.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number", s)
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1..65535", p)
	}
	return p, nil
}
