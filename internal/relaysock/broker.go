package relaysock

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/net/bpf"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/prefilter"
)

// Request is one worker → supervisor frame on the socket socketpair: the
// socket the worker needs. Exactly one of Ingress and Egress is set.
type Request struct {
	// Seq numbers the request; its Reply carries the same number, so that
	// a reply that arrives after the worker gave up waiting is recognised
	// and discarded.
	Seq     uint64     `json:"seq"`
	Ingress *Ingress   `json:"ingress,omitempty"`
	Egress  *EgressKey `json:"egress,omitempty"`
	// Resync, set instead of Ingress and Egress, asks for nothing but a
	// Reply carrying the same text: the worker lost the replies' framing
	// and discards what it receives up to that Reply (Client.resync).
	Resync string `json:"resync,omitempty"`
}

// maxResync bounds Request.Resync: a nonce, not a payload to echo.
const maxResync = 64

// Ingress asks for the AF_PACKET socket of an input interface, joined to
// fanout group FanoutID, with the prefilter Filter (prefilter.Build, made
// relative to the network header by prefilter.AtNetworkHeader) attached as
// OpenIngress attaches it (behind the VLAN guard unless the socket has a
// ring), and with a TPACKET_V3 receive ring of geometry Ring unless Ring is
// nil.
type Ingress struct {
	IfIndex  int                  `json:"ifindex"`
	FanoutID int                  `json:"fanout_id"`
	Filter   []bpf.RawInstruction `json:"filter"`
	Ring     *Ring                `json:"ring,omitempty"`
}

// Reply is one supervisor → worker frame: on success it carries exactly one
// fd (SCM_RIGHTS); otherwise Error says why, and Errno keeps the errno when
// there was one, so errors.Is works across the process boundary. An input
// socket the kernel would not give its prefilter comes with its fd and an
// Error, and Unfiltered set: the error then wraps prefilter.ErrUnfiltered
// on the worker's side too.
type Reply struct {
	Seq        uint64 `json:"seq"`
	Error      string `json:"error,omitempty"`
	Errno      int    `json:"errno,omitempty"`
	Unfiltered bool   `json:"unfiltered,omitempty"`
	// Resync echoes Request.Resync.
	Resync string `json:"resync,omitempty"`
}

// replyTo returns the reply to request seq that failed with err.
func replyTo(seq uint64, err error) Reply {
	r := Reply{Seq: seq, Error: err.Error(), Unfiltered: errors.Is(err, prefilter.ErrUnfiltered)}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	return r
}

// remoteError is an error the supervisor reported: the same text, the
// errno when there was one, and prefilter.ErrUnfiltered when it was that.
type remoteError struct {
	text       string
	errno      syscall.Errno
	unfiltered bool
}

func (e *remoteError) Error() string { return e.text }

func (e *remoteError) Unwrap() []error {
	var errs []error
	if e.errno != 0 {
		errs = append(errs, e.errno)
	}
	if e.unfiltered {
		errs = append(errs, prefilter.ErrUnfiltered)
	}
	return errs
}

// err returns the error r reports, nil when it reports none.
func (r Reply) err() error {
	if r.Error == "" {
		return nil
	}
	return &remoteError{text: r.Error, errno: syscall.Errno(r.Errno), unfiltered: r.Unfiltered}
}

// ingressGrant is what an ingress request must name.
type ingressGrant struct{ ifindex, fanoutID int }

// Grants is the set of input sockets a ruleset needs, the policy Serve
// applies to ingress requests: a worker may open the input socket of every
// rule (on its interface, in its fanout group), and no other. Rules are
// counted in and out as the ruleset changes. Egress sockets are the
// supervisor's own, held per egress identity: a worker gets a dup of one
// that some output needs. It is not safe for concurrent use.
type Grants struct {
	ingress map[ingressGrant]int
}

// NewGrants returns the grants of an empty ruleset.
func NewGrants() *Grants {
	return &Grants{ingress: make(map[ingressGrant]int)}
}

// Add grants the sockets wr needs.
func (g *Grants) Add(wr controlproto.WorkerRule) { g.count(wr, 1) }

// Remove takes back what Add(wr) granted, unless another rule needs it too.
func (g *Grants) Remove(wr controlproto.WorkerRule) { g.count(wr, -1) }

func (g *Grants) count(wr controlproto.WorkerRule, d int) {
	if wr.InputIfIndex > 0 {
		k := ingressGrant{wr.InputIfIndex, wr.FanoutID}
		if g.ingress[k] += d; g.ingress[k] <= 0 {
			delete(g.ingress, k)
		}
	}
}

// Allow returns nil when some rule needs the input socket req asks for, and
// an error saying what was refused otherwise.
func (g *Grants) Allow(req Request) error {
	switch {
	case req.Ingress != nil && req.Egress != nil:
		return fmt.Errorf("socket request %d: both ingress and egress", req.Seq)
	case req.Ingress != nil:
		in := req.Ingress
		if g.ingress[ingressGrant{in.IfIndex, in.FanoutID}] == 0 {
			return fmt.Errorf("refused: no rule has input ifindex %d in fanout group %d: %w",
				in.IfIndex, in.FanoutID, syscall.EPERM)
		}
	case req.Egress != nil:
		return fmt.Errorf("socket request %d: egress sockets are held, not granted", req.Seq)
	default:
		return fmt.Errorf("socket request %d: neither ingress nor egress", req.Seq)
	}
	return nil
}
