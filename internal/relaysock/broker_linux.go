package relaysock

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/prefilter"
)

// ReplyTimeout bounds how long a worker waits for the supervisor to answer
// one request; the worker's loop is blocked meanwhile.
const ReplyTimeout = 5 * time.Second

// maxReply is the largest reply body a client accepts: replies are an error
// text at most.
const maxReply = 64 << 10

// Client is the worker's side of the broker: it asks for sockets on its end
// of the socket socketpair and waits for each. It is not safe for
// concurrent use; the worker's event loop owns it.
//
// A reply is read whole even when its fd is lost (the kernel truncates the
// control message when the worker has no fd to spare, RLIMIT_NOFILE), so
// that request fails with EMFILE and the next reply is read from its
// start. When the framing is lost anyway (a reply cut short by a timeout,
// a length no reply has), the client marks the stream broken and, before
// its next request, resynchronises it: it asks for a Resync reply with a
// random nonce and discards everything up to it. That needs no new fd, so
// it works in the very condition that usually breaks the stream, and the
// worker keeps relaying what it holds; restarting the worker would stop
// all of its traffic and meet the same fd limit again.
type Client struct {
	fd  int
	seq uint64
	buf []byte
	oob []byte
	// broken is why the stream lost its framing; nil while it has it.
	broken error
	// lostFD is set while a reply is read whose fd did not arrive.
	lostFD bool
	// errors and resyncs are what Errors and Resyncs report.
	errors, resyncs uint64
}

// NewClient returns a client on fd, which it makes blocking with a receive
// timeout of ReplyTimeout.
func NewClient(fd int) (*Client, error) {
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, fmt.Errorf("socket broker fd %d: make blocking: %w", fd, err)
	}
	tv := unix.NsecToTimeval(ReplyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("socket broker fd %d: set receive timeout: %w", fd, err)
	}
	return &Client{fd: fd, oob: make([]byte, unix.CmsgSpace(4))}, nil
}

// Errors counts the requests that failed on the way rather than in the
// supervisor: no reply in time, a reply whose fd was lost (the worker was
// out of fds), a reply out of frame, a resync that did not succeed. The
// supervisor's own errors (a refusal, a socket it could not open) are not
// counted: they belong to the rule that asked.
func (c *Client) Errors() uint64 { return c.errors }

// Resyncs counts the times the stream lost its framing and was
// resynchronised.
func (c *Client) Resyncs() uint64 { return c.resyncs }

// Broken returns why the stream lost its framing, nil while it has it (or
// once the next request resynchronised it).
func (c *Client) Broken() error { return c.broken }

// OpenIngress asks for the ingress socket of ifindex in fanout group
// fanoutID with the prefilter prog and, unless ring is nil, a receive ring,
// as OpenIngress opens it: a socket the kernel would not give its
// prefilter comes with an error wrapping prefilter.ErrUnfiltered, and the
// caller owns it.
func (c *Client) OpenIngress(ifindex, fanoutID int, prog []bpf.RawInstruction, ring *Ring) (int, error) {
	return c.open(Request{Ingress: &Ingress{IfIndex: ifindex, FanoutID: fanoutID, Filter: prog, Ring: ring}})
}

// OpenEgress asks for the egress socket of k, as OpenEgress opens it.
func (c *Client) OpenEgress(k EgressKey) (int, error) {
	return c.open(Request{Egress: &k})
}

// open sends req and waits for its reply. The supervisor's errors come back
// with their text unchanged, so a rule reports the same error whichever
// process opened its socket.
func (c *Client) open(req Request) (int, error) {
	fd, err, remote := c.exchange(req)
	if err != nil && !remote {
		c.errors++
	}
	return fd, err
}

// exchange is open; remote tells an error the supervisor reported.
func (c *Client) exchange(req Request) (fd int, err error, remote bool) {
	if c.broken != nil {
		if err := c.resync(); err != nil {
			return -1, err, false
		}
	}
	c.seq++
	req.Seq = c.seq
	if err := c.send(req); err != nil {
		return -1, err, false
	}
	for {
		rep, fd, err := c.readReply()
		if err != nil {
			return -1, err, false
		}
		if rep.Seq != req.Seq { // the answer to a request given up on
			closeFD(fd)
			continue
		}
		if c.lostFD {
			closeFD(fd)
			return -1, fmt.Errorf("receive socket reply %d: its fd was lost (control message truncated): %w", rep.Seq, unix.EMFILE), false
		}
		if err := rep.err(); err != nil && !(rep.Unfiltered && fd >= 0) {
			closeFD(fd)
			return -1, err, true
		} else if err != nil {
			return fd, err, true // open, without its prefilter
		}
		if fd < 0 {
			return -1, fmt.Errorf("socket reply %d carries no fd", rep.Seq), false
		}
		return fd, nil, false
	}
}

// send writes req as one frame.
func (c *Client) send(req Request) error {
	frame, err := controlproto.AppendFrame(c.buf[:0], req)
	if err != nil {
		return fmt.Errorf("encode socket request: %w", err)
	}
	c.buf = frame
	if err := c.write(frame); err != nil {
		return fmt.Errorf("send socket request: %w", err)
	}
	return nil
}

func (c *Client) write(p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(c.fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// readReply reads one reply frame and the fd that came with it (-1: none).
// An error that leaves the stream inside a frame marks it broken; a timeout
// before the first byte does not (the late reply is skipped by its Seq).
// A reply whose fd was lost is read whole, with c.lostFD set.
func (c *Client) readReply() (Reply, int, error) {
	var hdr [4]byte
	fd := -1
	c.lostFD = false
	fail := func(err error) (Reply, int, error) {
		closeFD(fd)
		return Reply{}, -1, err
	}
	if got, err := c.recv(hdr[:], &fd); err != nil {
		if got > 0 {
			c.broken = err
		}
		return fail(err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxReply {
		c.broken = fmt.Errorf("socket reply of %d bytes: over the %d-byte limit", n, maxReply)
		return fail(c.broken)
	}
	body := make([]byte, n)
	if _, err := c.recv(body, &fd); err != nil {
		c.broken = err
		return fail(err)
	}
	var rep Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return fail(fmt.Errorf("decode socket reply: %w", err))
	}
	return rep, fd, nil
}

// recv fills p with recvmsg(2), taking the fd an SCM_RIGHTS message carries
// into *fd, and returns how many bytes it read.
func (c *Client) recv(p []byte, fd *int) (int, error) {
	got := 0
	for got < len(p) {
		n, err := c.recvOnce(p[got:], fd)
		if err != nil {
			return got, err
		}
		got += n
	}
	return got, nil
}

// recvOnce is one recvmsg(2) into p (retried on EINTR), at least one byte
// unless it fails. A second fd, or a truncated control message (the kernel
// could not install the fd), sets c.lostFD and closes every fd received;
// the bytes still count, so a frame is read to its end.
func (c *Client) recvOnce(p []byte, fd *int) (int, error) {
	for {
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, p, c.oob, unix.MSG_CMSG_CLOEXEC)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, fmt.Errorf("no socket reply from the supervisor within %v", ReplyTimeout)
		case err != nil:
			return 0, fmt.Errorf("receive socket reply: %w", err)
		}
		fds, perr := rights(c.oob[:oobn])
		if perr != nil || flags&unix.MSG_CTRUNC != 0 || len(fds) > 1 || (len(fds) == 1 && *fd >= 0) {
			c.lostFD = true
			for _, f := range fds {
				unix.Close(f)
			}
			fds = nil
		}
		if len(fds) == 1 {
			*fd = fds[0]
		}
		if n == 0 {
			return 0, fmt.Errorf("receive socket reply: %w", io.ErrUnexpectedEOF)
		}
		return n, nil
	}
}

// resync brings a broken stream back into frame: it sends a Resync request
// with a random nonce and discards what arrives (closing any fd) until the
// stream ends with the reply that echoes it. Serve answers requests in
// order and the client sends nothing meanwhile, so that reply is the last
// thing on the stream. The stream stays broken when resync fails; the next
// request tries again.
func (c *Client) resync() error {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("resynchronise socket stream: %w", err)
	}
	c.seq++
	req := Request{Seq: c.seq, Resync: hex.EncodeToString(nonce[:])}
	want, err := controlproto.AppendFrame(nil, Reply{Seq: req.Seq, Resync: req.Resync})
	if err == nil {
		err = c.send(req)
	}
	if err != nil {
		return fmt.Errorf("resynchronise socket stream (out of frame: %v): %w", c.broken, err)
	}
	tail := make([]byte, 0, len(want)+4096)
	for !bytes.HasSuffix(tail, want) {
		if len(tail) > len(want) { // keep what may start the marker
			tail = append(tail[:0], tail[len(tail)-len(want):]...)
		}
		fd := -1
		n, err := c.recvOnce(tail[len(tail):cap(tail)], &fd)
		closeFD(fd)
		if err != nil {
			return fmt.Errorf("resynchronise socket stream (out of frame: %v): %w", c.broken, err)
		}
		tail = tail[:len(tail)+n]
	}
	c.broken = nil
	c.resyncs++
	return nil
}

// rights returns the fds of the SCM_RIGHTS messages in oob.
func rights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // not SCM_RIGHTS
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// Opener returns the socket a request asks for, or why it cannot have it;
// an input socket without its prefilter comes with an error wrapping
// prefilter.ErrUnfiltered (OpenIngress), and is sent with it. Serve owns
// the returned fd: it sends it with the reply and closes it right after,
// so an opener that keeps a socket of its own (one shared by every worker,
// or one that outlives a worker) returns a dup of it.
type Opener func(Request) (fd int, err error)

// Serve answers the requests of one worker on conn, the supervisor's end of
// its socket socketpair, until the worker closes it (nil) or the stream
// fails. open decides whether a request may be served and opens its socket;
// nil means Open, every request allowed. A refused request, or a socket that
// cannot be opened, gets an error reply; an opened socket is sent with the
// reply and closed here right after. A Resync request gets a reply that
// echoes it, and opens nothing. answered, when not nil, is told each
// request and the error its reply carried (nil: none).
func Serve(conn *net.UnixConn, open Opener, answered func(Request, error)) error {
	if open == nil {
		open = Open
	}
	fr := controlproto.NewFrameReader(conn)
	var out []byte
	for {
		body, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read socket request: %w", err)
		}
		var req Request
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("decode socket request: %w", err)
		}
		fd, rep := answer(req, open)
		if answered != nil {
			answered(req, rep.err())
		}
		if out, err = controlproto.AppendFrame(out[:0], rep); err == nil {
			err = send(conn, out, fd)
		}
		closeFD(fd)
		if err != nil {
			return fmt.Errorf("send socket reply: %w", err)
		}
	}
}

// answer returns the reply to req and the fd it carries (-1: none).
func answer(req Request, open Opener) (int, Reply) {
	if req.Resync != "" {
		if req.Ingress != nil || req.Egress != nil || len(req.Resync) > maxResync {
			return -1, replyTo(req.Seq, fmt.Errorf("socket request %d: a resync asks for nothing else, with at most %d bytes of nonce", req.Seq, maxResync))
		}
		return -1, Reply{Seq: req.Seq, Resync: req.Resync}
	}
	fd, err := open(req)
	switch {
	case err == nil:
		return fd, Reply{Seq: req.Seq}
	case fd >= 0 && errors.Is(err, prefilter.ErrUnfiltered):
		return fd, replyTo(req.Seq, err) // open, without its prefilter
	}
	closeFD(fd)
	return -1, replyTo(req.Seq, err)
}

// Open opens the socket req asks for, with no policy: the caller has
// decided that req may be served (Grants.Allow). An ingress socket is
// opened on its own, joining its group in FanoutHash mode; a supervisor
// that keeps the members of a group for the workers opens them with
// OpenIngressGroup instead.
func Open(req Request) (int, error) {
	switch {
	case req.Ingress != nil && req.Egress == nil:
		in := req.Ingress
		return OpenIngress(in.IfIndex, in.FanoutID, FanoutHash, in.Filter, in.Ring)
	case req.Egress != nil && req.Ingress == nil:
		return OpenEgress(*req.Egress)
	}
	return -1, fmt.Errorf("socket request %d: want exactly one of ingress and egress", req.Seq)
}

// send writes frame with fd (when ≥ 0) riding on its first byte.
func send(conn *net.UnixConn, frame []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	n, _, err := conn.WriteMsgUnix(frame, oob, nil)
	if err != nil || n == len(frame) {
		return err
	}
	_, err = conn.Write(frame[n:])
	return err
}
