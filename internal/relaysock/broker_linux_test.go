package relaysock

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/ruleset"
)

// acceptAll is a filter that passes every packet.
var acceptAll = []bpf.RawInstruction{{Op: 0x06, K: 0xffff}} // ret #0xffff

// serve runs Serve with the grants of rules inside ns on one end of a new
// socketpair and returns a client on the other.
func serve(t *testing.T, ns *netnstest.NS, rules ...controlproto.WorkerRule) *Client {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(sp[0]), "sup")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.UnixConn)
	g := NewGrants()
	for _, wr := range rules {
		g.Add(wr)
	}
	done := make(chan error, 1)
	go func() { done <- ns.Do(func() error { return Serve(conn, allowed(g)) }) }()
	t.Cleanup(func() {
		unix.Close(sp[1]) // the worker's end: Serve sees EOF
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
	cl, err := NewClient(sp[1])
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestClientServe opens the sockets a rule needs through the broker, in a
// namespace, and checks what arrives: an AF_PACKET socket bound to the
// input, a UDP socket bound to the output's interface and a port of its
// own, not connected; an input no rule has is refused with the supervisor's
// error and its errno.
func TestClientServe(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "rsock")
	lo := ns.IfIndex("lo")
	out := ruleset.Output{Interface: "lo", Group: "127.0.0.2", Port: 6000}
	cl := serve(t, ns, workerRule("r", lo, 9, lo, out))

	fd, err := cl.OpenIngress(lo, 9, acceptAll, nil)
	if err != nil {
		t.Fatalf("OpenIngress: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	unix.Close(fd)
	if ll, ok := sa.(*unix.SockaddrLinklayer); err != nil || !ok || ll.Ifindex != lo {
		t.Errorf("ingress socket name %#v, %v; want AF_PACKET bound to ifindex %d", sa, err, lo)
	}

	fd, err = cl.OpenEgress(EgressKey{IfIndex: lo})
	if err != nil {
		t.Fatalf("OpenEgress: %v", err)
	}
	name, err := unix.Getsockname(fd)
	_, perr := unix.Getpeername(fd)
	dev, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	unix.Close(fd)
	if in4, ok := name.(*unix.SockaddrInet4); err != nil || !ok || in4.Port == 0 || dev != lo {
		t.Errorf("egress socket name %#v, %v, bound to ifindex %d; want an IPv4 port of its own on ifindex %d", name, err, dev, lo)
	}
	if !errors.Is(perr, unix.ENOTCONN) {
		t.Errorf("egress socket peer: %v, want ENOTCONN (destinations are given per send)", perr)
	}

	_, err = cl.OpenIngress(lo, 8, acceptAll, nil)
	want := "refused: no rule has input ifindex 1 in fanout group 8: operation not permitted"
	if err == nil || err.Error() != want || !errors.Is(err, syscall.EPERM) {
		t.Errorf("OpenIngress of an input no rule has: %v, want %q wrapping EPERM", err, want)
	}
}

// TestClientDiscardsStaleReply answers a request late, after a reply
// that belongs to an earlier request: the client skips that one and
// closes the fd it carried.
func TestClientDiscardsStaleReply(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	cl, err := NewClient(sp[1])
	if err != nil {
		t.Fatal(err)
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[1])
	reply := func(seq uint64, fd int) {
		frame, err := controlproto.AppendFrame(nil, Reply{Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendmsg(sp[0], frame, unix.UnixRights(fd), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	reply(0, pipe[0]) // answers a request given up on
	reply(1, pipe[1])
	unix.Close(pipe[0])
	fd, err := cl.OpenEgress(EgressKey{IfIndex: 1})
	if err != nil {
		t.Fatalf("OpenEgress: %v", err)
	}
	defer unix.Close(fd)
	// fd is the write end: the stale read end was closed, so a write
	// fails with EPIPE.
	if _, err := unix.Write(fd, []byte{1}); !errors.Is(err, unix.EPIPE) {
		t.Errorf("write to the fd of the current reply: %v, want EPIPE (the stale reply's fd closed)", err)
	}
}

// allowed is the opener of a supervisor whose policy for inputs is g; it
// opens every egress socket asked for.
func allowed(g *Grants) Opener {
	return func(req Request) (int, error) {
		if req.Egress == nil {
			if err := g.Allow(req); err != nil {
				return -1, err
			}
		}
		return Open(req)
	}
}
