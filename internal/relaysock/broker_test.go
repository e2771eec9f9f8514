package relaysock

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
)

func workerRule(id string, ifindex, fanout int, outIfindex int, outputs ...ruleset.Output) controlproto.WorkerRule {
	wr := controlproto.WorkerRule{
		Rule:         ruleset.Rule{ID: id, Input: ruleset.Input{Interface: "in0", Group: "239.1.1.1", Port: 5000}, Outputs: outputs},
		InputIfIndex: ifindex,
		FanoutID:     fanout,
	}
	for range outputs {
		wr.OutputIfIndex = append(wr.OutputIfIndex, outIfindex)
	}
	return wr
}

// TestGrants checks that a worker may open exactly the input sockets the
// current ruleset needs, counting rules that share one.
func TestGrants(t *testing.T) {
	shared := ruleset.Output{Interface: "out0", Group: "239.2.2.2", Port: 6000}
	a := workerRule("a", 2, 7, 3, shared)
	b := workerRule("b", 2, 7, 3, shared, ruleset.Output{Interface: "out0", Group: "239.2.2.3", Port: 6000, TTL: 4})
	ingress := Request{Seq: 1, Ingress: &Ingress{IfIndex: 2, FanoutID: 7}}
	g := NewGrants()
	g.Add(a)
	g.Add(b)
	g.Remove(a)
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{name: "input of a rule", req: ingress},
		{name: "input in another fanout group", req: Request{Seq: 3, Ingress: &Ingress{IfIndex: 2, FanoutID: 8}},
			wantErr: "refused: no rule has input ifindex 2 in fanout group 8: operation not permitted"},
		{name: "input on another interface", req: Request{Seq: 3, Ingress: &Ingress{IfIndex: 1, FanoutID: 7}},
			wantErr: "refused: no rule has input ifindex 1 in fanout group 7: operation not permitted"},
		{name: "egress", req: Request{Seq: 4, Egress: &EgressKey{IfIndex: 3}},
			wantErr: "socket request 4: egress sockets are held, not granted"},
		{name: "neither", req: Request{Seq: 4}, wantErr: "socket request 4: neither ingress nor egress"},
		{name: "both", req: Request{Seq: 5, Ingress: ingress.Ingress, Egress: &EgressKey{IfIndex: 3}},
			wantErr: "socket request 5: both ingress and egress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := g.Allow(tc.req)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Allow: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("Allow: %v, want %q", err, tc.wantErr)
			case errors.Is(err, syscall.EPERM) != strings.HasPrefix(tc.wantErr, "refused"):
				t.Errorf("Allow: %v: errors.Is(err, EPERM) = %v", err, errors.Is(err, syscall.EPERM))
			}
		})
	}
	g.Remove(b)
	if err := g.Allow(ingress); err == nil {
		t.Error("Allow of the input after every rule was removed: nil, want refused")
	}
}

// TestEgressKeyFor resolves outputs to their egress identity.
func TestEgressKeyFor(t *testing.T) {
	out := func(o ruleset.Output) ruleset.Output {
		o.Interface, o.Port = "out0", 6000
		return o
	}
	tests := []struct {
		name    string
		out     ruleset.Output
		ifindex int
		want    EgressKey
		wantErr string
	}{
		{name: "IPv4, no source", out: out(ruleset.Output{Group: "239.2.2.2", TTL: 9}), ifindex: 3,
			want: EgressKey{IfIndex: 3}},
		{name: "IPv6 with source and port", out: out(ruleset.Output{Group: "ff3e::2", Source: "fd00::1", SourcePort: 5001}), ifindex: 3,
			want: EgressKey{IfIndex: 3, V6: true, Src: netip.MustParseAddr("fd00::1"), Port: 5001}},
		{name: "IPv4-mapped group", out: out(ruleset.Output{Group: "::ffff:239.2.2.2", Source: "::ffff:10.0.0.1"}), ifindex: 3,
			want: EgressKey{IfIndex: 3, Src: netip.MustParseAddr("10.0.0.1")}},
		{name: "transparent", out: out(ruleset.Output{Group: "ff3e::2", PreserveSource: true}), ifindex: 4,
			want: EgressKey{IfIndex: 4, V6: true, Raw: true}},
		{name: "no interface", out: out(ruleset.Output{Group: "239.2.2.2"}), wantErr: "interface out0 does not exist"},
		{name: "source of the other family", out: out(ruleset.Output{Group: "239.2.2.2", Source: "fd00::1"}), ifindex: 3,
			wantErr: "source fd00::1 and group 239.2.2.2 differ in family"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wr := workerRule("r", 2, 7, tc.ifindex, tc.out)
			got, err := EgressKeyFor(wr, 0)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("EgressKeyFor: %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("EgressKeyFor: %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
