package relaysock

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/prefilter"
	"github.com/mcrelay/mcr/ruleset"
)

// acceptAll is a filter that passes every packet.
var acceptAll = []bpf.RawInstruction{{Op: 0x06, K: 0xffff}} // ret #0xffff

// serve runs Serve with the grants of rules inside ns on one end of a new
// socketpair and returns a client on the other.
func serve(t *testing.T, ns *netnstest.NS, rules ...controlproto.WorkerRule) *Client {
	t.Helper()
	cl, _ := serveConn(t, ns, rules...)
	return cl
}

// serveConn is serve that also returns the supervisor's end of the pair.
func serveConn(t *testing.T, ns *netnstest.NS, rules ...controlproto.WorkerRule) (*Client, *net.UnixConn) {
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
	go func() { done <- ns.Do(func() error { return Serve(conn, allowed(g), nil) }) }()
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
	return cl, conn
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

// fakeSupervisor is the supervisor's end of a socket socketpair driven by
// hand: it reads the client's requests and writes whatever the test says.
type fakeSupervisor struct {
	t  *testing.T
	fd int
	fr *controlproto.FrameReader
}

// newFakeSupervisor returns a client and the fake supervisor it talks to.
func newFakeSupervisor(t *testing.T) (*Client, *fakeSupervisor) {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sp[0]); unix.Close(sp[1]) })
	cl, err := NewClient(sp[1])
	if err != nil {
		t.Fatal(err)
	}
	return cl, &fakeSupervisor{t: t, fd: sp[0], fr: controlproto.NewFrameReader(fdReader(sp[0]))}
}

// fdReader reads a raw fd without taking it over as an *os.File would.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) { return unix.Read(int(r), p) }

// request reads the next request.
func (s *fakeSupervisor) request() Request {
	body, err := s.fr.Next()
	if err != nil {
		s.t.Errorf("fake supervisor: read request: %v", err)
		return Request{}
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		s.t.Errorf("fake supervisor: decode request: %v", err)
	}
	return req
}

// send writes raw bytes, with fds riding on the first byte.
func (s *fakeSupervisor) send(b []byte, fds ...int) {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(s.fd, b, oob, nil, 0); err != nil {
		s.t.Errorf("fake supervisor: send: %v", err)
	}
}

func (s *fakeSupervisor) reply(rep Reply, fds ...int) {
	frame, err := controlproto.AppendFrame(nil, rep)
	if err != nil {
		s.t.Fatal(err)
	}
	s.send(frame, fds...)
}

// openPipe returns the two ends of a pipe, closed when the test ends.
func openPipe(t *testing.T) [2]int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p
}

var testKey = EgressKey{IfIndex: 1}

// TestClientOutOfFDsKeepsFraming answers a worker that has no fd to spare:
// the kernel cannot install the reply's fd and truncates the control
// message (the worker under RLIMIT_NOFILE, here this test process). That
// request fails with EMFILE, counted, and once fds are free again the next
// reply is read from its start: no "socket reply of 1701913146 bytes".
func TestClientOutOfFDsKeepsFraming(t *testing.T) {
	cl, sup := newFakeSupervisor(t)
	pipe := openPipe(t)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// The lowest free fd: with the limit there, no fd can be installed.
	free, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := sup.request()
		sup.reply(Reply{Seq: req.Seq}, pipe[0])
		req = sup.request()
		sup.reply(Reply{Seq: req.Seq}, pipe[1])
	}()
	lim := unix.Rlimit{Cur: uint64(free), Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fd, err := cl.OpenEgress(testKey)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, unix.EMFILE) || fd != -1 {
		t.Errorf("OpenEgress out of fds: %d, %v; want -1 and EMFILE", fd, err)
	}
	fd, err = cl.OpenEgress(testKey)
	if err != nil {
		t.Fatalf("OpenEgress with fds to spare: %v", err)
	}
	unix.Close(fd)
	<-done
	if cl.Errors() != 1 || cl.Resyncs() != 0 || cl.Broken() != nil {
		t.Errorf("errors %d, resyncs %d, broken %v; want 1, 0, nil", cl.Errors(), cl.Resyncs(), cl.Broken())
	}
}

// TestClientResyncs breaks the stream's framing with a length no reply has
// and bytes after it: the request fails, the next one first resynchronises
// the stream (skipping the garbage and the fds on the way) and then gets
// its socket. No fd is left behind.
func TestClientResyncs(t *testing.T) {
	cl, sup := newFakeSupervisor(t)
	pipe := openPipe(t)
	before, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := sup.request()
		sup.send([]byte("ersi")) // "ersi" = 1701999465 bytes
		sup.reply(Reply{Seq: req.Seq}, pipe[0])
		resync := sup.request()
		if resync.Resync == "" || resync.Ingress != nil || resync.Egress != nil {
			sup.t.Errorf("request after a broken reply: %+v, want a resync", resync)
		}
		sup.send([]byte("on\"}garbage"), pipe[0])
		sup.reply(Reply{Seq: resync.Seq - 1, Resync: resync.Resync}) // not the marker: wrong seq
		sup.reply(Reply{Seq: resync.Seq, Resync: resync.Resync})
		req = sup.request()
		sup.reply(Reply{Seq: req.Seq}, pipe[1])
	}()
	_, err = cl.OpenEgress(testKey)
	if want := "socket reply of 1701999465 bytes: over the 65536-byte limit"; err == nil || err.Error() != want {
		t.Errorf("OpenEgress on a garbled stream: %v, want %q", err, want)
	}
	if cl.Broken() == nil {
		t.Error("stream not marked broken")
	}
	fd, err := cl.OpenEgress(testKey)
	if err != nil {
		t.Fatalf("OpenEgress after the stream broke: %v", err)
	}
	unix.Close(fd)
	<-done
	if after, err := openFDs(); err != nil || after != before {
		t.Errorf("fds open: %d before, %d after (%v)", before, after, err)
	}
	if cl.Errors() != 1 || cl.Resyncs() != 1 || cl.Broken() != nil {
		t.Errorf("errors %d, resyncs %d, broken %v; want 1, 1, nil", cl.Errors(), cl.Resyncs(), cl.Broken())
	}
}

// TestServeResyncs garbles the stream between the real Serve and a client
// (bytes that are no reply, ahead of Serve's first reply): the client's
// next request resynchronises through Serve and gets its socket.
func TestServeResyncs(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "rsync")
	lo := ns.IfIndex("lo")
	out := ruleset.Output{Interface: "lo", Group: "127.0.0.2", Port: 6000}
	cl, conn := serveConn(t, ns, workerRule("r", lo, 9, lo, out))
	k := EgressKey{IfIndex: lo, Port: 6001}
	// Serve writes nothing before the first request.
	if _, err := conn.Write(append([]byte{0xff, 0xff, 0xff, 0xff}, "xyz"...)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.OpenEgress(k); err == nil || cl.Broken() == nil {
		t.Fatalf("OpenEgress behind garbage: %v, broken %v; want an error and a broken stream", err, cl.Broken())
	}
	fd, err := cl.OpenEgress(k)
	if err != nil {
		t.Fatalf("OpenEgress after the resync: %v", err)
	}
	name, err := unix.Getsockname(fd)
	unix.Close(fd)
	if in4, ok := name.(*unix.SockaddrInet4); err != nil || !ok || in4.Port != 6001 {
		t.Errorf("socket after the resync: name %#v, %v; want port 6001", name, err)
	}
	if cl.Resyncs() != 1 {
		t.Errorf("resyncs %d, want 1", cl.Resyncs())
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

// TestUnfilteredSocketIsSent: an input socket the kernel would not give its
// prefilter is still sent, and the worker gets it with an error that says
// so (prefilter.ErrUnfiltered, keeping the errno), not counted as a failed
// request; any other error of the opener sends no fd.
func TestUnfilteredSocketIsSent(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sp[1]) })
	f := os.NewFile(uintptr(sp[0]), "supervisor end")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := openPipe(t)
	var refuse atomic.Bool // no happens-before the race detector sees across the socket
	open := func(Request) (int, error) {
		if refuse.Load() {
			return -1, fmt.Errorf("open input: %w", syscall.ENODEV)
		}
		fd, err := unix.FcntlInt(uintptr(p[0]), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		return fd, fmt.Errorf("attach prefilter: %w: %w", prefilter.ErrUnfiltered, syscall.ENOMEM)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(conn.(*net.UnixConn), open, nil) }()
	t.Cleanup(func() { conn.Close(); <-done })
	cl, err := NewClient(sp[1])
	if err != nil {
		t.Fatal(err)
	}

	fd, err := cl.OpenIngress(1, 7, acceptAll, nil)
	if fd < 0 || !errors.Is(err, prefilter.ErrUnfiltered) || !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("OpenIngress = %d, %v; want an fd and an error wrapping ErrUnfiltered and ENOMEM", fd, err)
	}
	if fd >= 0 {
		unix.Close(fd)
	}
	refuse.Store(true)
	if fd, err := cl.OpenIngress(1, 7, acceptAll, nil); fd >= 0 || errors.Is(err, prefilter.ErrUnfiltered) || !errors.Is(err, syscall.ENODEV) {
		t.Errorf("OpenIngress refused = %d, %v; want no fd and ENODEV", fd, err)
	}
	if n := cl.Errors(); n != 0 {
		t.Errorf("Errors() = %d, want 0: the supervisor answered both", n)
	}
}
