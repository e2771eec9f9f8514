package relaysock

import (
	"fmt"
	"net/netip"

	"github.com/mcrelay/mcr/controlproto"
)

// EgressKey identifies an egress socket. Outputs with equal keys, in any
// rules, share one connected socket, so n rules relaying to one destination
// cost one fd, not n; the supervisor grants a worker exactly the keys of its
// ruleset's outputs.
type EgressKey struct {
	IfIndex int            `json:"ifindex"`
	Dst     netip.AddrPort `json:"dst"` // unmapped
	TTL     int            `json:"ttl,omitempty"`
	Src     netip.Addr     `json:"src,omitzero"` // zero when the output names no source
	// AddrGen is the output's WorkerRule.OutputAddrGen: not an option of
	// the socket but part of its identity, so that a change of the
	// interface's addresses gets the output a freshly connected socket.
	AddrGen int `json:"addr_gen,omitempty"`
}

func (k EgressKey) String() string {
	return fmt.Sprintf("%v on ifindex %d", k.Dst, k.IfIndex)
}

// EgressKeyFor resolves output i of wr to the socket it needs.
func EgressKeyFor(wr controlproto.WorkerRule, i int) (EgressKey, error) {
	o := wr.Outputs[i]
	ifindex, gen := 0, 0
	if i < len(wr.OutputIfIndex) {
		ifindex = wr.OutputIfIndex[i]
	}
	if i < len(wr.OutputAddrGen) {
		gen = wr.OutputAddrGen[i]
	}
	if ifindex <= 0 {
		return EgressKey{}, fmt.Errorf("interface %s does not exist", o.Interface)
	}
	dst, err := netip.ParseAddr(o.Group)
	if err != nil {
		return EgressKey{}, fmt.Errorf("group: %w", err)
	}
	if o.Port < 1 || o.Port > 65535 {
		return EgressKey{}, fmt.Errorf("port %d out of range", o.Port)
	}
	k := EgressKey{IfIndex: ifindex, Dst: netip.AddrPortFrom(dst.Unmap(), uint16(o.Port)), TTL: o.TTL, AddrGen: gen}
	if o.Source != "" {
		if k.Src, err = netip.ParseAddr(o.Source); err != nil {
			return EgressKey{}, fmt.Errorf("source: %w", err)
		}
		k.Src = k.Src.Unmap()
	}
	return k, nil
}
