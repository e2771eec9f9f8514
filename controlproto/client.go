package controlproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrClosed reports that the connection to the daemon is closed: the daemon
// hung up before replying (it stopped, or could not frame the request), or
// the Client was closed. errors.Is(err, ErrClosed) holds for errors of Call
// and Do in that case; the Client is then unusable.
var ErrClosed = errors.New("connection to daemon closed")

// maxResponseSize bounds one response line read by the Client. Responses
// come from the trusted daemon and may be large (GetStats with many rules),
// so the bound only stops a runaway stream.
const maxResponseSize = 256 << 20

// Client is an operator-protocol connection, used by mcrctl and tests. Calls
// are serialised: it is safe for concurrent use, one request at a time.
type Client struct {
	conn   net.Conn
	closed atomic.Bool

	mu   sync.Mutex // serialises requests; guards br, line and err
	br   *bufio.Reader
	line []byte
	err  error // the transport error that broke the connection
}

// Dial connects to the control socket at path. When the daemon is not
// there, the error wraps the errno: errors.Is(err, syscall.ENOENT) when the
// socket file does not exist, syscall.ECONNREFUSED when no daemon listens on
// it, syscall.EACCES without permission.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	return &Client{conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}, nil
}

// Call sends req and decodes a successful result into result (a pointer, or
// nil to ignore it; *json.RawMessage keeps it raw). A daemon error is
// returned as *Error, so callers can errors.As it and read its Code.
// Transport failures wrap ErrClosed when the daemon hung up, and ctx.Err()
// when ctx ended first.
func (c *Client) Call(ctx context.Context, req Request, result any) error {
	resp, err := c.Do(ctx, req)
	if err != nil {
		return err
	}
	if !resp.OK {
		if resp.Error == nil {
			return Errorf(CodeInternal, "daemon answered %s with neither result nor error", req.Command)
		}
		return resp.Error
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("decode %s result: %w", req.Command, err)
		}
	}
	return nil
}

// Do sends req and returns the daemon's response, error responses included;
// its error reports transport failures only, as Call does.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return Response{}, fmt.Errorf("call %s: %w", req.Command, ErrClosed)
	}
	if c.err != nil {
		return Response{}, fmt.Errorf("call %s: %w", req.Command, c.err)
	}
	line, err := json.Marshal(req)
	if err != nil {
		return Response{}, fmt.Errorf("encode %s request: %w", req.Command, err)
	}
	resp, err := c.roundTrip(ctx, append(line, '\n'))
	if err != nil {
		// The reply may still arrive later and would answer the next
		// request: the connection is unusable.
		c.err = err
		c.conn.Close()
		return Response{}, fmt.Errorf("call %s: %w", req.Command, err)
	}
	return resp, nil
}

// roundTrip writes one request line and reads one response line, within
// ctx.
func (c *Client) roundTrip(ctx context.Context, line []byte) (Response, error) {
	deadline, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(deadline); err != nil {
		return Response{}, fmt.Errorf("set deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetDeadline(time.Unix(1, 0)) // wakes the blocked read or write
	})
	defer stop()

	if _, err := c.conn.Write(line); err != nil {
		return Response{}, c.transportError(ctx, "send request", err)
	}
	reply, err := c.readLine()
	if err != nil {
		return Response{}, c.transportError(ctx, "read response", err)
	}
	var resp Response
	if err := json.Unmarshal(reply, &resp); err != nil {
		return Response{}, fmt.Errorf("decode response: %w", err)
	}
	return resp, nil
}

// readLine reads one response line, newline included. A stream that ends
// before the newline is io.ErrUnexpectedEOF: the daemon went away while
// answering.
func (c *Client) readLine() ([]byte, error) {
	c.line = c.line[:0]
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.line)+len(frag) > maxResponseSize {
			return nil, fmt.Errorf("longer than %d bytes", maxResponseSize)
		}
		c.line = append(c.line, frag...)
		switch {
		case err == nil:
			return c.line, nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF) && len(c.line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// transportError names what failed and why: ctx's end, the daemon hanging
// up (ErrClosed, keeping the errno), or the I/O error itself.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline is ctx's, which has passed; ctx's own
		// timer may not have fired yet.
		<-ctx.Done()
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", op, ctxErr)
	}
	if c.closed.Load() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%s: %w: %w", op, ErrClosed, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Close closes the connection, waking a Call blocked on it; that call and
// all later ones fail with ErrClosed. Closing twice is a no-op.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.conn.Close()
}
