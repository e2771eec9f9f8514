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

// TestGrants checks that a worker may open exactly the sockets the current
// ruleset needs, counting rules that share one in and out.
func TestGrants(t *testing.T) {
	shared := ruleset.Output{Interface: "out0", Group: "239.2.2.2", Port: 6000}
	a := workerRule("a", 2, 7, 3, shared)
	b := workerRule("b", 2, 7, 3, shared, ruleset.Output{Interface: "out0", Group: "239.2.2.3", Port: 6000, TTL: 4})
	ingress := Request{Seq: 1, Ingress: &Ingress{IfIndex: 2, FanoutID: 7}}
	egress := func(group string, ttl int) Request {
		return Request{Seq: 2, Egress: &EgressKey{IfIndex: 3, Dst: netip.MustParseAddrPort(group + ":6000"), TTL: ttl}}
	}
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
		{name: "output shared by a removed and a remaining rule", req: egress("239.2.2.2", 0)},
		{name: "output with its TTL", req: egress("239.2.2.3", 4)},
		{name: "output with another TTL", req: egress("239.2.2.3", 5),
			wantErr: "refused: no rule has output 239.2.2.3:6000 on ifindex 3: operation not permitted"},
		{name: "input in another fanout group", req: Request{Seq: 3, Ingress: &Ingress{IfIndex: 2, FanoutID: 8}},
			wantErr: "refused: no rule has input ifindex 2 in fanout group 8: operation not permitted"},
		{name: "input on another interface", req: Request{Seq: 3, Ingress: &Ingress{IfIndex: 1, FanoutID: 7}},
			wantErr: "refused: no rule has input ifindex 1 in fanout group 7: operation not permitted"},
		{name: "neither", req: Request{Seq: 4}, wantErr: "socket request 4: neither ingress nor egress"},
		{name: "both", req: Request{Seq: 5, Ingress: ingress.Ingress, Egress: egress("239.2.2.2", 0).Egress},
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
