package controlproto

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// serve runs a minimal daemon on a unix socket in a temporary directory:
// each request line is decoded with DecodeRequest and answered by handle
// (or with the decode error). A nil response from handle hangs up. It
// returns the socket path.
func serve(t *testing.T, handle func(Request) *Response) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			serveConn(conn, handle)
		}
	}()
	return path
}

func serveConn(conn net.Conn, handle func(Request) *Response) {
	defer conn.Close()
	lines := NewLineReader(conn, 0)
	for {
		line, tooLong, err := lines.Next()
		if err != nil {
			return
		}
		resp := Fail(CodeInvalidArgument, "request longer than %d bytes", MaxRequestSize)
		if !tooLong {
			req, perr := DecodeRequest(line)
			if perr != nil {
				resp = Response{Error: perr}
			} else {
				r := handle(req)
				if r == nil {
					return
				}
				resp = *r
			}
		}
		if err := WriteResponse(conn, resp); err != nil {
			return
		}
	}
}

func respond(r Response) *Response { return &r }

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientCall(t *testing.T) {
	path := serve(t, func(req Request) *Response {
		switch req.Command {
		case CmdRemoveRule:
			if req.ID != "market-a" {
				return respond(Fail(CodeNotFound, "no rule %q", req.ID))
			}
			return respond(OK(IDResult{ID: req.ID}))
		case CmdPing:
			return respond(OK(nil))
		}
		return respond(Fail(CodeInternal, "unexpected %s", req.Command))
	})
	c := dial(t, path)
	ctx := context.Background()

	var got IDResult
	if err := c.Call(ctx, Request{Command: CmdRemoveRule, ID: "market-a"}, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(IDResult{ID: "market-a"}, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}

	err := c.Call(ctx, Request{Command: CmdRemoveRule, ID: "nope"}, &got)
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("daemon error: err = %v (%T), want *Error", err, err)
	}
	if diff := cmp.Diff(&Error{Code: CodeNotFound, Message: `no rule "nope"`}, perr); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}

	// The connection stays usable after an error reply, and a request the
	// daemon rejects while decoding is an *Error too.
	if err := c.Call(ctx, Request{Command: CmdPing}, nil); err != nil {
		t.Errorf("Ping after an error: %v", err)
	}
	if err := c.Call(ctx, Request{Command: "Bogus"}, nil); !errors.As(err, &perr) || perr.Message != `unknown command "Bogus"` {
		t.Errorf("unknown command: err = %v", err)
	}

	var raw json.RawMessage
	if err := c.Call(ctx, Request{Command: CmdRemoveRule, ID: "market-a"}, &raw); err != nil || string(raw) != `{"id":"market-a"}` {
		t.Errorf("raw result %s, err %v", raw, err)
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	if _, err := Dial(context.Background(), missing); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Dial(missing socket): err = %v, want ENOENT", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = Dial(context.Background(), stale)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial(stale socket): err = %v, want ECONNREFUSED", err)
	}
	if want := "connect to " + stale + ": "; err == nil || err.Error()[:len(want)] != want {
		t.Errorf("Dial error %q does not start with %q", err, want)
	}
}

func TestClientDaemonHangsUp(t *testing.T) {
	path := serve(t, func(Request) *Response { return nil })
	c := dial(t, path)
	err := c.Call(context.Background(), Request{Command: CmdPing}, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if err := c.Call(context.Background(), Request{Command: CmdPing}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after hang-up: err = %v, want ErrClosed", err)
	}
}

func TestClientContext(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(Request) *Response {
		<-release
		return respond(OK(nil))
	})
	t.Cleanup(func() { close(release) })
	c := dial(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, Request{Command: CmdPing}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// A late reply would answer the wrong request: the client is done.
	if err := c.Call(context.Background(), Request{Command: CmdPing}, nil); err == nil {
		t.Error("call after a timed-out call succeeded")
	}
}

func TestClientCancel(t *testing.T) {
	release := make(chan struct{})
	path := serve(t, func(Request) *Response {
		<-release
		return respond(OK(nil))
	})
	t.Cleanup(func() { close(release) })
	c := dial(t, path)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Call(ctx, Request{Command: CmdPing}, nil) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want Canceled", err)
	}
}

func TestClientCloseWakesCall(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	path := serve(t, func(Request) *Response {
		close(started)
		<-release
		return respond(OK(nil))
	})
	t.Cleanup(func() { close(release) })
	c := dial(t, path)

	errc := make(chan error, 1)
	go func() { errc <- c.Call(context.Background(), Request{Command: CmdPing}, nil) }()
	<-started
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("err = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the blocked Call")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// serveRaw answers the first request line on a connection with reply and
// hangs up.
func serveRaw(t *testing.T, reply string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, _, err := NewLineReader(conn, 0).Next(); err == nil {
			conn.Write([]byte(reply))
		}
	}()
	return path
}

func TestClientBadReplies(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		check   func(error) bool
		wantErr string
	}{
		{name: "cut short", reply: `{"ok":tr`, check: func(err error) bool { return errors.Is(err, ErrClosed) },
			wantErr: "call Ping: read response: connection to daemon closed: unexpected EOF"},
		{name: "not JSON", reply: "hello\n", check: func(err error) bool { return err != nil && !errors.Is(err, ErrClosed) },
			wantErr: "call Ping: decode response: invalid character 'h' looking for beginning of value"},
		{name: "neither result nor error", reply: `{"ok":false}` + "\n", check: func(err error) bool {
			var perr *Error
			return errors.As(err, &perr) && perr.Code == CodeInternal
		}, wantErr: "internal: daemon answered Ping with neither result nor error"},
		{name: "result of the wrong type", reply: `{"ok":true,"result":[1]}` + "\n", check: func(err error) bool { return err != nil },
			wantErr: "decode Ping result: json: cannot unmarshal array into Go value of type controlproto.IDResult"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, serveRaw(t, tt.reply))
			var res IDResult
			err := c.Call(context.Background(), Request{Command: CmdPing}, &res)
			if !tt.check(err) {
				t.Errorf("err = %v (%T): not the expected kind", err, err)
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("err = %v\nwant  %s", err, tt.wantErr)
			}
		})
	}
}
