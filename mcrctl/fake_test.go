package mcrctl

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"github.com/mcrelay/mcr/controlproto"
)

// fakeDaemon is a control socket in a test's temporary directory that
// answers every request line with the reply scripted for its command, and
// records the request lines it received.
type fakeDaemon struct {
	path    string
	replies map[string]string // command → reply line; absent → not_found error

	mu       sync.Mutex
	requests []string
	// onRequest, if set, runs after each reply with the command and the
	// number of requests so far.
	onRequest func(command string, n int)
}

// newFakeDaemon serves replies on a fresh socket until the test ends.
func newFakeDaemon(t *testing.T, replies map[string]string) *fakeDaemon {
	t.Helper()
	return newFakeDaemonAt(t, filepath.Join(t.TempDir(), "s"), replies)
}

// newFakeDaemonAt is newFakeDaemon on a socket at path.
func newFakeDaemonAt(t *testing.T, path string, replies map[string]string) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{path: path, replies: replies}
	ln, err := net.Listen("unix", d.path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); d.serve(conn) }()
		}
	}()
	return d
}

func (d *fakeDaemon) serve(conn net.Conn) {
	defer conn.Close()
	lines := controlproto.NewLineReader(conn, 0)
	for {
		line, _, err := lines.Next()
		if err != nil {
			return
		}
		var req struct{ Command string }
		_ = json.Unmarshal(line, &req)
		d.mu.Lock()
		d.requests = append(d.requests, string(line))
		n := len(d.requests)
		reply, ok := d.replies[req.Command]
		hook := d.onRequest
		d.mu.Unlock()
		switch {
		case !ok:
			reply = `{"ok":false,"error":{"code":"not_found","message":"no scripted reply"}}`
		case reply == hangUp:
			return
		case reply == silent:
			io.Copy(io.Discard, conn) // until the client gives up
			return
		}
		if _, err := io.WriteString(conn, reply+"\n"); err != nil {
			return
		}
		if hook != nil {
			hook(req.Command, n)
		}
	}
}

// Scripted replies that are not replies.
const (
	hangUp = "<close the connection>"
	silent = "<never reply>"
)

func (d *fakeDaemon) requestLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.requests...)
}

// result is what one run of mcrctl did.
type result struct {
	code           int
	stdout, stderr string
}

// runOpts tune a test run.
type runOpts struct {
	tty   bool // stdout is a terminal
	env   map[string]string
	stdin string
	ctx   context.Context
	// runtimeDir replaces /run/mcr, where --netns looks for sockets; ""
	// is a directory that does not exist.
	runtimeDir string
}

// runCLI runs mcrctl in-process against socket (added as --socket unless
// empty) and returns what it did. stdout is a syncbuf.Buffer so watch tests can
// read it while it runs.
func runCLI(t *testing.T, socket string, o runOpts, args ...string) result {
	t.Helper()
	var stdout syncbuf.Buffer
	return runCLIInto(t, &stdout, socket, o, args...)
}

func runCLIInto(t *testing.T, stdout *syncbuf.Buffer, socket string, o runOpts, args ...string) result {
	t.Helper()
	if socket != "" {
		args = append([]string{"--socket", socket}, args...)
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	var stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(o.stdin), stdout, &stderr,
		func(k string) string { return o.env[k] },
		options{
			watchInterval: 10 * time.Millisecond,
			tracePoll:     10 * time.Millisecond,
			isTerminal:    func(w io.Writer) bool { return o.tty && w == io.Writer(stdout) },
			now:           func() time.Time { return time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC) },
			runtimeDir:    cmp.Or(o.runtimeDir, filepath.Join(t.TempDir(), "run")),
		})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}
