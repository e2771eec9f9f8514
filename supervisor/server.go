package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
)

// Control-socket limits.
const (
	// maxConns is the most operator connections served at once; one more
	// is accepted, told `unavailable` and closed.
	maxConns = 256
	// writeTimeout bounds one flush of replies to a client: a client that
	// stops reading its replies is disconnected after it, and meanwhile
	// delays nobody else.
	writeTimeout = 10 * time.Second
	// pendingReplies is how many replies a connection queues for its
	// writer before the reader waits (pipelined requests).
	pendingReplies = 128
	// probeTimeout bounds the Ping that tells a live daemon's socket from
	// a stale one at start.
	probeTimeout = time.Second
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

// server serves the operator control socket (SPEC §4): one goroutine reads
// and answers each connection's requests in order, another writes its
// replies, so a connection that is slow, stalled mid-line or never reads
// delays no one else. Requests reach the handler as they arrive; the
// handler's own locking serialises what must be.
type server struct {
	log    *slog.Logger
	ln     *net.UnixListener
	handle handlerFunc
	slots  chan struct{} // one token per open connection, up to maxConns
	// refused counts connections turned away for the limit.
	refused atomic.Uint64

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu

	wg sync.WaitGroup // accept loop and connection goroutines
}

// listenControl opens the control socket at path: the parent directory is
// created (0755) if missing, and the socket is mode 0660. A socket file
// left by a daemon that is gone is replaced; one on which a daemon answers
// Ping is not, and the error says so.
func listenControl(path string, log *slog.Logger) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create control socket directory: %w", err)
	}
	if err := clearStaleSocket(path, log); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set control socket mode: %w", err)
	}
	return ln, nil
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

func newServer(ln *net.UnixListener, handle handlerFunc, log *slog.Logger) *server {
	return &server{
		log:    log,
		ln:     ln,
		handle: handle,
		slots:  make(chan struct{}, maxConns),
		conns:  map[net.Conn]struct{}{},
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
		select {
		case s.slots <- struct{}{}:
			if s.track(conn) {
				s.wg.Add(1)
				go s.serveConn(conn)
			}
		default:
			s.wg.Add(1)
			go s.refuse(conn)
		}
	}
}

// track registers conn for close; false (and conn closed) once the server
// is closing.
func (s *server) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		conn.Close()
		<-s.slots
		return false
	}
	s.conns[conn] = struct{}{}
	return true
}

// refuse tells a connection over the limit why it is closed.
func (s *server) refuse(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	if n := s.refused.Add(1); n&(n-1) == 0 { // 1st, 2nd, 4th, 8th…: a flood cannot flood the log
		s.log.Warn("control connections refused: too many open", "limit", maxConns, "refused_so_far", n)
	}
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	controlproto.WriteResponse(conn, controlproto.Fail(controlproto.CodeUnavailable,
		"too many control connections (limit %d); try again later", maxConns))
}

// serveConn reads requests from conn and answers each in order, until the
// client hangs up or the connection is closed (by the writer after a failed
// write, or by close).
func (s *server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	replies := make(chan reply, pendingReplies)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeReplies(conn, replies)
	}()
	from := peerOf(conn)
	lines := controlproto.NewLineReader(conn, controlproto.MaxRequestSize)
	for {
		line, tooLong, err := lines.Next()
		if err != nil {
			break
		}
		replies <- s.answer(line, tooLong, from)
	}
	close(replies)
	<-writerDone
	conn.Close()
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
	<-s.slots
}

// answer returns the reply to one request line from peer from, logging
// who sent a request that changes the daemon.
func (s *server) answer(line []byte, tooLong bool, from peer) reply {
	if tooLong {
		return reply{resp: controlproto.Fail(controlproto.CodeInvalidArgument,
			"request longer than %d bytes", controlproto.MaxRequestSize)}
	}
	req, perr := controlproto.DecodeRequest(line)
	if perr != nil {
		return reply{resp: controlproto.Response{Error: perr}}
	}
	from.logRequest(s.log, req)
	resp, durable := s.handle(req)
	return reply{resp: resp, durable: durable}
}

// writeReplies writes replies to conn as they come, flushing whenever no
// more are queued, so a pipelining client gets many replies per write. After
// a failed write it closes conn, which ends the reader's loop, and discards
// the replies still coming until the reader closes replies.
func (s *server) writeReplies(conn net.Conn, replies <-chan reply) {
	w := bufio.NewWriterSize(conn, 64<<10)
	var failed error
	for r := range replies {
		if failed != nil {
			continue
		}
		resp := r.resp
		if r.durable != nil {
			if !r.durable.settled() && w.Buffered() > 0 {
				// What is ready goes out while the disk works.
				conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if failed = w.Flush(); failed != nil {
					s.log.Debug("control connection dropped", "err", failed)
					conn.Close()
					continue
				}
			}
			if err := r.durable.wait(); err != nil {
				resp = controlproto.Response{Error: err}
			}
		}
		failed = controlproto.WriteResponse(w, resp)
		if failed == nil && len(replies) == 0 {
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			failed = w.Flush()
		}
		if failed != nil {
			s.log.Debug("control connection dropped", "err", failed)
			conn.Close()
		}
	}
}

// close stops accepting, closes every connection and waits for their
// goroutines; the socket file is removed with the listener.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for conn := range s.conns {
		conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
