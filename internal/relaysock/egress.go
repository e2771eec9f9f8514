package relaysock

import (
	"fmt"
	"net/netip"

	"github.com/mcrelay/mcr/controlproto"
)

// EgressKey identifies an egress socket: an output's egress identity, the
// source its datagrams leave from. The socket is not connected (each send
// names its destination and, when the output sets one, its TTL or hop
// limit), so outputs with equal keys share it whatever their destinations:
// egress sockets scale with identities, not with outputs. The supervisor
// opens each once and hands every worker the same one, so every worker
// sends an output's datagrams from the same address and port.
type EgressKey struct {
	IfIndex int  `json:"ifindex"`
	V6      bool `json:"v6,omitempty"`
	// Src is the output's source address, unmapped; zero when it names
	// none: the kernel then picks one of the interface's addresses per
	// destination.
	Src netip.Addr `json:"src,omitzero"`
	// Port is the output's source port (Output.SourcePort); 0: the one the
	// kernel picks when the supervisor opens the socket.
	Port int `json:"port,omitempty"`
	// Raw asks for the raw IP socket of outputs that keep the input's
	// source (Output.PreserveSource): the worker writes the IP and UDP
	// headers itself. Src and Port are zero.
	Raw bool `json:"raw,omitempty"`
}

func (k EgressKey) String() string {
	family := "IPv4"
	if k.V6 {
		family = "IPv6"
	}
	if k.Raw {
		return fmt.Sprintf("raw %s socket on ifindex %d", family, k.IfIndex)
	}
	return fmt.Sprintf("%s socket from %s on ifindex %d", family, k.source(), k.IfIndex)
}

// source names the address and port the socket binds to: "10.0.0.1:5001",
// "[fd00::1]", "port 5001", "any port".
func (k EgressKey) source() string {
	switch {
	case k.Src.IsValid() && k.Port != 0:
		return netip.AddrPortFrom(k.Src, uint16(k.Port)).String()
	case k.Src.IsValid():
		return k.Src.String()
	case k.Port != 0:
		return fmt.Sprintf("port %d", k.Port)
	}
	return "any port"
}

// EgressKeyFor resolves output i of wr to the socket it sends on.
func EgressKeyFor(wr controlproto.WorkerRule, i int) (EgressKey, error) {
	o := wr.Outputs[i]
	ifindex := 0
	if i < len(wr.OutputIfIndex) {
		ifindex = wr.OutputIfIndex[i]
	}
	if ifindex <= 0 {
		return EgressKey{}, fmt.Errorf("interface %s does not exist", o.Interface)
	}
	dst, err := netip.ParseAddr(o.Group)
	if err != nil {
		return EgressKey{}, fmt.Errorf("group: %w", err)
	}
	if o.SourcePort < 0 || o.SourcePort > 65535 {
		return EgressKey{}, fmt.Errorf("source port %d out of range", o.SourcePort)
	}
	k := EgressKey{IfIndex: ifindex, V6: dst.Unmap().Is6(), Raw: o.PreserveSource}
	if k.Raw {
		return k, nil
	}
	k.Port = o.SourcePort
	if o.Source != "" {
		if k.Src, err = netip.ParseAddr(o.Source); err != nil {
			return EgressKey{}, fmt.Errorf("source: %w", err)
		}
		k.Src = k.Src.Unmap()
		if k.Src.Is6() != k.V6 {
			return EgressKey{}, fmt.Errorf("source %v and group %v differ in family", k.Src, dst)
		}
	}
	return k, nil
}
