package worker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/ruleset"
)

// fakeSockets records what the rule database asks of the kernel.
type fakeSockets struct {
	ops        []string
	nextFD     int
	failOut    map[string]error // openEgress errors by socket (egressKey.String)
	failInput  map[int]error    // openInput errors by ifindex
	failFilter map[int]error    // filterInput errors by ifindex
}

func newFakeSockets() *fakeSockets { return &fakeSockets{nextFD: 100} }

func (f *fakeSockets) openInput(in *input, m []inputMatch) error {
	f.ops = append(f.ops, fmt.Sprintf("open input %d fanout %d %s", in.ifindex, in.fanoutID, fmtMatches(m)))
	if err := f.failInput[in.ifindex]; err != nil {
		return err
	}
	in.fd = f.nextFD
	f.nextFD++
	return nil
}

func (f *fakeSockets) filterInput(in *input, m []inputMatch) error {
	f.ops = append(f.ops, fmt.Sprintf("filter input %d %s", in.ifindex, fmtMatches(m)))
	return f.failFilter[in.ifindex]
}

func (f *fakeSockets) closeInput(in *input) {
	f.ops = append(f.ops, fmt.Sprintf("close input %d", in.ifindex))
	in.fd = -1
}

// openEgress opens a fake socket whose source port is 40000 + its fd, on
// an interface whose MTU is 1500.
func (f *fakeSockets) openEgress(e *egress) error {
	f.ops = append(f.ops, "open egress "+e.key.String())
	if err := f.failOut[e.key.String()]; err != nil {
		return err
	}
	e.fd, e.mtu = f.nextFD, 1500
	if !e.key.Raw {
		e.port = uint16(40000 + e.fd)
	}
	f.nextFD++
	return nil
}

func (f *fakeSockets) closeEgress(e *egress) {
	f.ops = append(f.ops, "close egress "+e.key.String())
	e.fd = -1
}

// take returns the operations recorded since the last call.
func (f *fakeSockets) take() []string {
	ops := f.ops
	f.ops = nil
	return ops
}

func fmtMatches(m []inputMatch) string {
	s := make([]string, len(m))
	for i, x := range m {
		s[i] = fmt.Sprintf("%v:%d", x.Dst, x.Port)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// wrule builds a WorkerRule: input "group:port" (or "group:port from
// source") on ifindex, outputs "group:port@ifindex" followed by any of
// " from SOURCE", " port SOURCE_PORT", " ttl TTL", " transparent" and
// " addrs A,B" (the addresses of the output's interface the supervisor
// sends, WorkerRule.OutputAddrs).
func wrule(id string, ifindex int, in string, outs ...string) controlproto.WorkerRule {
	wr := controlproto.WorkerRule{Rule: ruleset.Rule{ID: id}, InputIfIndex: ifindex, FanoutID: 7}
	addr, src, _ := strings.Cut(in, " from ")
	wr.Input = ruleset.Input{Interface: fmt.Sprintf("if%d", ifindex), Source: src}
	wr.Input.Group, wr.Input.Port = splitHostPort(addr)
	for i, o := range outs {
		words := strings.Fields(o)
		hp, ifx, _ := strings.Cut(words[0], "@")
		var out ruleset.Output
		out.Group, out.Port = splitHostPort(hp)
		var n int
		fmt.Sscan(ifx, &n)
		out.Interface = fmt.Sprintf("if%d", n)
		for j := 1; j < len(words); j++ {
			switch words[j] {
			case "from":
				j++
				out.Source = words[j]
			case "port":
				j++
				fmt.Sscan(words[j], &out.SourcePort)
			case "ttl":
				j++
				fmt.Sscan(words[j], &out.TTL)
			case "transparent":
				out.PreserveSource = true
			case "addrs":
				j++
				if wr.OutputAddrs == nil {
					wr.OutputAddrs = make([][]string, len(outs))
				}
				wr.OutputAddrs[i] = strings.Split(words[j], ",")
			}
		}
		wr.Outputs = append(wr.Outputs, out)
		wr.OutputIfIndex = append(wr.OutputIfIndex, n)
	}
	return wr
}

func splitHostPort(s string) (string, int) {
	i := strings.LastIndexByte(s, ':')
	var port int
	fmt.Sscan(s[i+1:], &port)
	return strings.Trim(s[:i], "[]"), port
}

// testLogger returns a logger writing JSON records into buf.
func testLogger(buf *bytes.Buffer) *slog.Logger {
	if buf == nil {
		return slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	return slog.New(slog.NewJSONHandler(buf, nil))
}

var errFake = errors.New("fake failure")

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
