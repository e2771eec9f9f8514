package mcrctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/tty"
)

// DefaultSocket is the control socket used when neither --socket, --netns
// nor the MCR_SOCKET environment variable names one.
const DefaultSocket = "/run/mcr/control.sock"

// RuntimeDir is where the systemd units put control sockets: mcrd.service's
// DefaultSocket, and one directory per relay of mcrd@NAME.service.
const RuntimeDir = "/run/mcr"

// NetnsSocket is the control socket of the relay that mcrd@NAME.service runs
// in network namespace NAME, the one `mcrctl --netns NAME` talks to.
func NetnsSocket(name string) string { return netnsSocket(RuntimeDir, name) }

func netnsSocket(runtimeDir, name string) string {
	return filepath.Join(runtimeDir, "netns", name, "control.sock")
}

// checkNetnsName refuses what cannot be the name of a namespace under
// /run/netns (ip-netns(8)), and so would point --netns outside its directory.
func checkNetnsName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("--netns %q: not a network namespace name (`ip netns list` shows them)", name)
	}
	return nil
}

// Exit statuses of Main (docs/cli.md).
const (
	exitOK          = 0
	exitFailure     = 1 // the daemon answered with an error, or output failed
	exitUsage       = 2 // bad flags, arguments or --outputs
	exitUnreachable = 3 // no daemon on the socket, or no reply in time
	// exitInterrupted is what a shell reports for a process killed by
	// SIGINT (128 + 2); Main returns it when ctx ends a request early.
	exitInterrupted = 130
)

// options are the parts of the environment tests replace.
type options struct {
	// watchInterval is the period of `stats --watch`.
	watchInterval time.Duration
	// isTerminal reports whether w is a terminal: tables get colours and
	// `stats --watch` redraws in place.
	isTerminal func(w io.Writer) bool
	// now stamps `stats --watch` snapshots.
	now func() time.Time
	// runtimeDir is RuntimeDir, where --netns looks for sockets.
	runtimeDir string
	// tracePoll is how often `trace` and `capture` ask for events.
	tracePoll time.Duration
}

// Main runs mcrctl with args (the command line without the program name)
// and returns its exit status: 0 on success, 1 when the daemon answers with
// an error, 2 on usage errors, 3 when the daemon cannot be reached, 130 when
// ctx ends (Ctrl-C) during a request. `stats --watch` treats the end of ctx
// as its normal way out and returns 0. getenv reads the environment
// (MCR_SOCKET, NO_COLOR, TERM); stdin is read by `config load -` and
// `config check -`.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return run(ctx, args, stdin, stdout, stderr, getenv, options{
		watchInterval: time.Second,
		isTerminal:    tty.IsTerminal,
		now:           time.Now,
		runtimeDir:    RuntimeDir,
		tracePoll:     250 * time.Millisecond,
	})
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer,
	getenv func(string) string, opts options) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, opts: opts}
	defer c.close()
	root := c.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var xe *exitError
	if !errors.As(err, &xe) {
		// Errors that do not come from a command's RunE are cobra's own:
		// unknown commands and flags, missing or extra arguments.
		xe = &exitError{code: exitUsage, err: err}
	}
	fmt.Fprintf(stderr, "mcrctl: %v\n", xe.err)
	if xe.code == exitUsage {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return xe.code
}

// exitError is a command's failure with the exit status it maps to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// cli is one run of mcrctl: its environment, global flags and the
// connection to the daemon, opened by the first request.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	opts           options

	socket  string
	netns   string // --netns: socket is that relay's
	json    bool
	timeout time.Duration

	client *controlproto.Client
}

func (c *cli) close() {
	if c.client != nil {
		c.client.Close()
	}
}

// call sends req to the daemon and decodes its result into result (see
// controlproto.Client.Call), within --timeout. Its errors are *exitError.
func (c *cli) call(ctx context.Context, req controlproto.Request, result any) error {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.client == nil {
		client, err := controlproto.Dial(callCtx, c.socket)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted(err)
			}
			return &exitError{code: exitUnreachable, err: c.dialError(err)}
		}
		c.client = client
	}
	err := c.client.Call(callCtx, req, result)
	var derr *controlproto.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &derr):
		return &exitError{code: exitFailure, err: derr}
	case ctx.Err() != nil:
		return interrupted(err)
	case errors.Is(err, controlproto.ErrClosed):
		return &exitError{code: exitUnreachable,
			err: fmt.Errorf("mcrd on %s closed the connection before replying to %s", c.socket, req.Command)}
	case errors.Is(err, context.DeadlineExceeded):
		return &exitError{code: exitUnreachable,
			err: fmt.Errorf("no reply from mcrd on %s to %s within %v", c.socket, req.Command, c.timeout)}
	}
	// The daemon answered something that is not a valid reply.
	return &exitError{code: exitFailure, err: err}
}

func interrupted(err error) error {
	return &exitError{code: exitInterrupted, err: fmt.Errorf("interrupted: %w", err)}
}

// dialError explains a failed connect in terms of what the operator can do.
func (c *cli) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT) && c.netns != "":
		return fmt.Errorf("cannot reach mcrd: socket %s does not exist; is mcrd@%s running? (systemctl status mcrd@%s)", c.socket, c.netns, c.netns)
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("cannot reach mcrd: socket %s does not exist; is mcrd running? (--socket or MCR_SOCKET names another socket)", c.socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach mcrd: connection to %s refused; is mcrd running?", c.socket)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot reach mcrd: permission denied on %s; run as root or as a member of the socket's group", c.socket)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cannot reach mcrd: no connection to %s within %v", c.socket, c.timeout)
	}
	return fmt.Errorf("cannot reach mcrd: %w", err)
}

// query sends req and prints the reply: the result verbatim with --json,
// else whatever human prints after the result is decoded into result.
func (c *cli) query(ctx context.Context, req controlproto.Request, result any, human func() error) error {
	if c.json {
		var raw json.RawMessage
		if err := c.call(ctx, req, &raw); err != nil {
			return err
		}
		return c.printJSON(raw)
	}
	if err := c.call(ctx, req, result); err != nil {
		return err
	}
	return human()
}

// printJSON prints a result as one line; a reply without a result prints
// null, so stdout always holds one JSON document.
func (c *cli) printJSON(raw json.RawMessage) error {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	_, err := c.stdout.Write(append(raw, '\n'))
	return err
}

// color reports whether output to w gets colours: on a terminal, unless
// NO_COLOR is set (no-color.org) or TERM is dumb.
func (c *cli) color(w io.Writer) bool {
	return c.opts.isTerminal(w) && c.getenv("NO_COLOR") == "" && c.getenv("TERM") != "dumb"
}
