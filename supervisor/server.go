package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/jsontext"
)

// Control-socket limits. docs/control-protocol.md (Transport) and
// docs/security.md (The control socket) state them for operators.
const (
	// maxConns is the most operator connections served at once. A new
	// connection beyond it closes the one idle longest (see admit), so a
	// new client is always served while any connection is only waiting;
	// only when every one is in the middle of a request is the new one
	// told `unavailable` and closed.
	maxConns = 256
	// idleTimeout closes a connection on which nothing has been read or
	// written for this long and no reply is pending: a forgotten
	// `socat` or a script that never hangs up frees its slot by itself.
	// It is far longer than any pause of a client that means to go on
	// (`mcrctl stats --watch` asks every interval).
	idleTimeout = 5 * time.Minute
	// writeTimeout bounds each write of at most replyChunk bytes to a
	// client: one that stops reading its replies (or reads slower than
	// replyChunk per writeTimeout) is disconnected after it, and
	// meanwhile delays nobody else. The deadline is set for every write,
	// so a client that was idle for any time gets its whole reply.
	writeTimeout = 10 * time.Second
	// replyChunk is the most bytes written under one write deadline: a
	// large reply (ListRules of 100,000 rules is tens of megabytes) is
	// written in chunks, each with its own deadline, so a slow but
	// reading client is not cut off while a stalled one still is.
	replyChunk = 64 << 10
	// pendingReplies is how many replies a connection queues for its
	// writer before the reader waits (pipelined requests).
	pendingReplies = 128
	// probeTimeout bounds the Ping that tells a live daemon's socket from
	// a stale one at start.
	probeTimeout = time.Second
	// maxErrorMessage bounds the message of an error reply. Messages
	// quote what a client sent cut short already (jsontext.Quote); this
	// catches any that does not, so that no reply grows with a hostile
	// request.
	maxErrorMessage = 1 << 10
)

// handlerFunc answers one decoded request. It is called from many
// connections at once. A reply with a durability is sent once that is
// settled (its change saved to --config): the connection goes on reading
// and handling requests meanwhile, so the changes of pipelined requests
// share one save.
type handlerFunc func(controlproto.Request) (controlproto.Response, durability)

// reply is a response on its way to the client, with what it waits for.
type reply struct {
	resp    controlproto.Response
	durable durability // nil: nothing
}

// server serves the operator control socket (docs/control-protocol.md): one
// goroutine reads and answers each connection's requests in order, another
// writes its replies, so a connection that is slow, stalled mid-line or
// never reads delays no one else. Requests reach the handler as they
// arrive; the handler's own locking serialises what must be.
type server struct {
	log    *slog.Logger
	ln     net.Listener
	handle handlerFunc
	// idleTimeout and writeTimeout are the constants of the same names;
	// tests shorten them.
	idleTimeout, writeTimeout time.Duration
	// epoch is the origin of clientConn.last, a monotonic clock.
	epoch time.Time
	// refused counts connections turned away because every slot was
	// busy, evicted the idle connections closed to make room.
	refused, evicted atomic.Uint64
	// connIDs numbers connections (clientConn.id); connClosed, when set, is
	// told the id of each connection that ended (traces end with it).
	connIDs    atomic.Uint64
	connClosed func(id uint64)

	mu        sync.Mutex
	conns     map[*clientConn]struct{} // every open connection, for close; guarded by mu
	operators int                      // the conns counted against maxConns; guarded by mu
	closed    bool                     // guarded by mu

	wg sync.WaitGroup // accept loop and connection goroutines
}

// clientConn is one control connection: it times out reads after the idle
// timeout and gives every write chunk its own deadline, and records what
// admit needs to pick a connection to close.
type clientConn struct {
	net.Conn
	s    *server
	from peer
	// own marks the daemon's own health check (server.check): it takes no
	// operator slot and is never evicted.
	own bool
	// counted is set while c takes an operator slot: from admit until it
	// ends or is evicted. Guarded by s.mu.
	counted bool
	// last is when a byte was last read or written, as time since
	// s.epoch.
	last atomic.Int64
	// busy counts the requests read whose replies are not yet written
	// out: a connection with busy > 0 is not idle.
	busy atomic.Int32
	// id names the connection to the handler (Request.Conn), from 1.
	id uint64
}

func (c *clientConn) touch() { c.last.Store(int64(time.Since(c.s.epoch))) }

// idleFor is how long nothing happened on c; 0 while a request is being
// answered.
func (c *clientConn) idleFor() time.Duration {
	if c.busy.Load() > 0 {
		return 0
	}
	return time.Since(c.s.epoch) - time.Duration(c.last.Load())
}

// Read reads like the connection's Read, failing with a deadline error
// once the connection has been idle for the idle timeout. Time spent
// writing replies to a slow reader does not count as idle.
func (c *clientConn) Read(p []byte) (int, error) {
	for {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.s.idleTimeout)); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.touch()
		}
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && c.idleFor() < c.s.idleTimeout {
			continue
		}
		return n, err
	}
}

// Write writes p in chunks of at most replyChunk bytes, each under a
// deadline of the write timeout from its start. The connection counts as
// active from the start of each chunk (and busy until the reply is out):
// so a reply's time is before its client could have seen it, and the
// client's next step, on this connection or another, comes after.
func (c *clientConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		end := min(len(p), written+replyChunk)
		c.touch()
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.s.writeTimeout)); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(p[written:end])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// listenControl opens the control socket at path, mode 0660 and, when
// group is set, owned by that group: the parent directory is created
// (0755) if missing. A socket file left by a daemon that is gone is
// replaced; one on which a daemon answers Ping is not, and the error says
// so.
//
// The socket never appears at path with another mode or group, whatever
// the umask: it is bound in a private directory (0700) next to path, given
// its mode and group there, then hard-linked to path (link(2) fails
// instead of replacing a socket another daemon linked meanwhile), and the
// private directory is removed. A client resolves path to the same socket
// inode, which the kernel looks up by inode.
func listenControl(path, group string, log *slog.Logger) (net.Listener, error) {
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, err
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if err := clearStaleSocket(path, log); err != nil {
		return nil, err
	}
	private, err := os.MkdirTemp(dir, ".mcr-") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("create control socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the name that stays is path; controlListener removes it
	fail := func(what string, err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail("set control socket mode", err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail("set control socket group", err)
		}
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%s appeared while mcrd started: another mcrd? %w", path, err)
		}
		return fail("place control socket", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail("place control socket", err)
	}
	return &controlListener{UnixListener: ln, path: path, file: fi}, nil
}

// controlListener is the control socket's listener: its address is the
// socket's final path, and Close removes that path if it is still this
// socket.
type controlListener struct {
	*net.UnixListener
	path string
	file fs.FileInfo // of path, to tell our socket from a later one
}

func (l *controlListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *controlListener) Close() error {
	err := l.UnixListener.Close()
	if fi, statErr := os.Lstat(l.path); statErr == nil && os.SameFile(fi, l.file) {
		os.Remove(l.path)
	}
	return err
}

// clearStaleSocket removes a socket file at path that no daemon answers on.
func clearStaleSocket(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("check control socket: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control socket %s exists and is not a socket", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := controlproto.Dial(ctx, path)
	if err == nil {
		defer c.Close()
		if c.Call(ctx, controlproto.Request{Command: controlproto.CmdPing}, nil) == nil {
			return fmt.Errorf("control socket %s is in use by a running mcrd", path)
		}
		return fmt.Errorf("control socket %s is in use: something accepts connections on it but does not answer Ping", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check control socket: %w", err)
	}
	log.Info("removing stale control socket", "path", path)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

func newServer(ln net.Listener, handle handlerFunc, log *slog.Logger) *server {
	return &server{
		log:          log,
		ln:           ln,
		handle:       handle,
		idleTimeout:  idleTimeout,
		writeTimeout: writeTimeout,
		epoch:        time.Now(),
		conns:        map[*clientConn]struct{}{},
	}
}

// start runs the accept loop in its own goroutine.
func (s *server) start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.log.Debug("control server started", "path", s.ln.Addr().String())
		s.acceptLoop()
		s.log.Debug("control server stopped")
	}()
}

// acceptLoop accepts connections until the listener closes. Accept errors
// such as EMFILE are retried after a pause that grows to a second.
func (s *server) acceptLoop() {
	var pause time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn("accept on control socket", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		c := &clientConn{Conn: conn, s: s, from: peerOf(conn), id: s.connIDs.Add(1)}
		c.touch()
		switch victim, ok := s.admit(c); {
		case ok:
			if victim != nil {
				s.evict(victim)
			}
			go s.serveConn(c)
		case !s.isClosed():
			s.wg.Add(1)
			go s.refuse(conn)
		}
	}
}

// admit registers c for close and reports whether it is served; if so, it
// counts c's goroutine in s.wg, which close waits for. When the
// operator connections are at maxConns it picks a victim to close: the
// connection idle the longest (reading, with no reply pending), which it
// unregisters at once so c takes its slot. When every connection is busy
// answering, or the server is closing, c is not served (and closed if
// closing).
func (s *server) admit(c *clientConn) (victim *clientConn, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, false
	}
	if !c.own && s.operators >= maxConns {
		if victim = s.idlest(); victim == nil {
			return nil, false
		}
		s.uncount(victim) // it stays in conns until its goroutines end
	}
	s.conns[c] = struct{}{}
	if !c.own {
		c.counted = true
		s.operators++
	}
	s.wg.Add(1) // under mu, so never after close's Wait began
	return victim, true
}

// idlest returns the operator connection idle the longest; nil when all
// are busy. The caller holds mu.
func (s *server) idlest() *clientConn {
	var best *clientConn
	var bestIdle time.Duration
	for c := range s.conns {
		if !c.counted {
			continue
		}
		if idle := c.idleFor(); idle > 0 && (best == nil || idle > bestIdle) {
			best, bestIdle = c, idle
		}
	}
	return best
}

// evict closes victim to make room for a new connection. It shuts down only
// the reading side, as if the client had closed its own: what the client
// sent is still answered and the replies written before the connection
// closes, and the client's next write fails with EPIPE, so it knows it was
// not heard.
func (s *server) evict(victim *clientConn) {
	if n := s.evicted.Add(1); n&(n-1) == 0 { // 1st, 2nd, 4th, 8th…: a flood cannot flood the log
		s.log.Warn("control connection closed to make room: too many open",
			append(victim.from.attrs(), "limit", maxConns, "idle", victim.idleFor().Round(time.Millisecond), "evicted_so_far", n)...)
	}
	if cr, ok := victim.Conn.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
		return
	}
	victim.Close()
}

// uncount frees c's operator slot, if it holds one. The caller holds mu.
func (s *server) uncount(c *clientConn) {
	if c.counted {
		c.counted = false
		s.operators--
	}
}

func (s *server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// refuse tells a connection over the limit why it is closed.
func (s *server) refuse(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	if n := s.refused.Add(1); n&(n-1) == 0 {
		s.log.Warn("control connections refused: too many open and none idle", "limit", maxConns, "refused_so_far", n)
	}
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	controlproto.WriteResponse(conn, controlproto.Fail(controlproto.CodeUnavailable,
		"too many control connections (limit %d), all busy; try again later", maxConns))
}

// serveConn reads requests from c and answers each in order, until the
// client hangs up, the connection is idle for the idle timeout, or it is
// closed (by the writer after a failed write, by eviction or by close).
func (s *server) serveConn(c *clientConn) {
	defer s.wg.Done()
	replies := make(chan reply, pendingReplies)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeReplies(c, replies)
	}()
	lines := controlproto.NewLineReader(c, controlproto.MaxRequestSize)
	for {
		line, tooLong, err := lines.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Debug("control connection closed: idle", append(c.from.attrs(), "idle_timeout", s.idleTimeout)...)
			}
			break
		}
		c.busy.Add(1)
		replies <- s.answer(line, tooLong, c.from, c.id)
	}
	close(replies)
	<-writerDone
	c.Close()
	if s.connClosed != nil {
		s.connClosed(c.id)
	}
	s.mu.Lock()
	delete(s.conns, c)
	s.uncount(c)
	s.mu.Unlock()
}

// answer returns the reply to one request line from peer from, logging
// who sent a request that changes the daemon or reads a config, and how
// such a request failed.
func (s *server) answer(line []byte, tooLong bool, from peer, conn uint64) reply {
	if tooLong {
		return reply{resp: controlproto.Fail(controlproto.CodeInvalidArgument,
			"request longer than %d bytes", controlproto.MaxRequestSize)}
	}
	req, perr := controlproto.DecodeRequest(line)
	if perr != nil {
		return reply{resp: boundError(controlproto.Response{Error: perr})}
	}
	req.Conn = conn
	from.logRequest(s.log, req)
	resp, durable := s.handle(req)
	resp = boundError(resp)
	from.logFailure(s.log, req, resp)
	return reply{resp: resp, durable: durable}
}

// boundError cuts the message of an error reply to maxErrorMessage bytes.
func boundError(r controlproto.Response) controlproto.Response {
	if r.Error != nil && len(r.Error.Message) > maxErrorMessage {
		r.Error = &controlproto.Error{Code: r.Error.Code, Message: jsontext.CutTo(r.Error.Message, maxErrorMessage)}
	}
	return r
}

// writeReplies writes replies to c as they come, flushing whenever no more
// are queued, so a pipelining client gets many replies per write. A reply
// that waits for its change to be saved waits in turn, after what is ready
// has gone out. After a failed write it closes c, which ends the reader's
// loop, and discards the replies still coming until the reader closes
// replies. c stays busy until each reply is out or discarded.
func (s *server) writeReplies(c *clientConn, replies <-chan reply) {
	w := bufio.NewWriterSize(c, replyChunk)
	var failed error
	unflushed := int32(0)
	for r := range replies {
		unflushed++
		if failed == nil {
			resp := r.resp
			if r.durable != nil {
				if !r.durable.settled() && w.Buffered() > 0 {
					// What is ready goes out while the disk works.
					failed = w.Flush()
				}
				if failed == nil {
					if err := r.durable.wait(); err != nil {
						resp = controlproto.Response{Error: err}
					}
				}
			}
			if failed == nil {
				failed = controlproto.WriteResponse(w, resp)
			}
			if failed == nil && len(replies) == 0 {
				failed = w.Flush()
			}
			if failed != nil {
				s.log.Debug("control connection dropped", append(c.from.attrs(), "err", failed)...)
				c.Close()
			}
		}
		if failed != nil || w.Buffered() == 0 {
			c.busy.Add(-unflushed)
			unflushed = 0
		}
	}
}

// check answers a Ping through the same reader, handler and writer as a
// client's, on a private in-memory connection that takes no operator slot:
// the watchdog's proof that the control server serves, which no number of
// operator connections can starve. It fails when ctx ends first or the
// server is closed.
func (s *server) check(ctx context.Context) error {
	client, daemon := net.Pipe()
	defer client.Close()
	c := &clientConn{Conn: daemon, s: s, own: true}
	c.touch()
	if _, ok := s.admit(c); !ok {
		return errors.New("control server closed")
	}
	go s.serveConn(c)
	deadline, _ := ctx.Deadline()
	client.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { client.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(client, `{"command":"Ping"}`+"\n"); err != nil {
		return fmt.Errorf("control server check: send Ping: %w", err)
	}
	reply, err := bufio.NewReader(client).ReadString('\n')
	if err != nil {
		return fmt.Errorf("control server check: read reply: %w", err)
	}
	if reply != `{"ok":true}`+"\n" {
		return fmt.Errorf("control server check: Ping answered %q", reply)
	}
	return nil
}

// close stops accepting, closes every connection and waits for their
// goroutines; the socket file is removed with the listener.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
