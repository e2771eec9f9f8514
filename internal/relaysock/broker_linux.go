package relaysock

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
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
type Client struct {
	fd  int
	seq uint64
	buf []byte
	oob []byte
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

// OpenIngress asks for the ingress socket of ifindex in fanout group
// fanoutID with prog attached and, unless ring is nil, a receive ring, as
// OpenIngress opens it.
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
	c.seq++
	req.Seq = c.seq
	frame, err := controlproto.AppendFrame(c.buf[:0], req)
	if err != nil {
		return -1, fmt.Errorf("encode socket request: %w", err)
	}
	c.buf = frame
	if err := c.write(frame); err != nil {
		return -1, fmt.Errorf("send socket request: %w", err)
	}
	for {
		rep, fd, err := c.readReply()
		if err != nil {
			return -1, err
		}
		if rep.Seq != req.Seq { // the answer to a request given up on
			closeFD(fd)
			continue
		}
		if err := rep.err(); err != nil {
			closeFD(fd)
			return -1, err
		}
		if fd < 0 {
			return -1, fmt.Errorf("socket reply %d carries no fd", rep.Seq)
		}
		return fd, nil
	}
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
func (c *Client) readReply() (Reply, int, error) {
	var hdr [4]byte
	fd := -1
	if err := c.recv(hdr[:], &fd); err != nil {
		return Reply{}, -1, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxReply {
		closeFD(fd)
		return Reply{}, -1, fmt.Errorf("socket reply of %d bytes: over the %d-byte limit", n, maxReply)
	}
	body := make([]byte, n)
	if err := c.recv(body, &fd); err != nil {
		closeFD(fd)
		return Reply{}, -1, err
	}
	var rep Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		closeFD(fd)
		return Reply{}, -1, fmt.Errorf("decode socket reply: %w", err)
	}
	return rep, fd, nil
}

// recv fills p with recvmsg(2), taking the fd an SCM_RIGHTS message carries
// into *fd. A second fd, or a truncated control message, is a protocol
// error: every fd received is closed.
func (c *Client) recv(p []byte, fd *int) error {
	for len(p) > 0 {
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, p, c.oob, unix.MSG_CMSG_CLOEXEC)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("no socket reply from the supervisor within %v", ReplyTimeout)
		case err != nil:
			return fmt.Errorf("receive socket reply: %w", err)
		}
		fds, perr := rights(c.oob[:oobn])
		if perr == nil && flags&unix.MSG_CTRUNC != 0 {
			perr = errors.New("control message truncated")
		}
		if perr == nil && len(fds) > 0 && (*fd >= 0 || len(fds) > 1) {
			perr = errors.New("more than one fd")
		}
		if perr != nil {
			for _, f := range fds {
				unix.Close(f)
			}
			return fmt.Errorf("receive socket reply: %w", perr)
		}
		if len(fds) == 1 {
			*fd = fds[0]
		}
		if n == 0 {
			return fmt.Errorf("receive socket reply: %w", io.ErrUnexpectedEOF)
		}
		p = p[n:]
	}
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

// Opener returns the socket a request asks for, or why it cannot have it.
// Serve owns the returned fd: it sends it with the reply and closes it right
// after, so an opener that keeps a socket of its own (one shared by every
// worker, or one that outlives a worker) returns a dup of it.
type Opener func(Request) (fd int, err error)

// Serve answers the requests of one worker on conn, the supervisor's end of
// its socket socketpair, until the worker closes it (nil) or the stream
// fails. open decides whether a request may be served and opens its socket;
// nil means Open, every request allowed. A refused request, or a socket that
// cannot be opened, gets an error reply; an opened socket is sent with the
// reply and closed here right after.
func Serve(conn *net.UnixConn, open Opener) error {
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
		fd, err := open(req)
		rep := Reply{Seq: req.Seq}
		if err != nil {
			rep = replyTo(req.Seq, err)
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

// Open opens the socket req asks for, with no policy: the caller has
// decided that req may be served (Grants.Allow).
func Open(req Request) (int, error) {
	switch {
	case req.Ingress != nil && req.Egress == nil:
		in := req.Ingress
		return OpenIngress(in.IfIndex, in.FanoutID, in.Filter, in.Ring)
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
