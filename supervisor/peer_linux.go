package supervisor

import (
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/jsontext"
)

// lookupGroup returns the gid of group name (--socket-group), whose members
// may connect to the control socket (its mode is 0660).
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("socket group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("socket group %s: gid %q: %w", name, g.Gid, err)
	}
	return gid, nil
}

// peer is who is at the other end of a control connection, as the kernel
// recorded it at connect(2) (SO_PEERCRED).
type peer struct {
	pid, uid, gid int
	known         bool
}

// peerOf returns the credentials of conn's peer; unknown when conn is not
// a Unix socket or the kernel does not say.
func peerOf(conn net.Conn) peer {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return peer{}
	}
	return peer{pid: int(cred.Pid), uid: int(cred.Uid), gid: int(cred.Gid), known: true}
}

// logged are the requests logged with who sent them: those that change the
// daemon's state, and CheckConfig, which like LoadConfig has the daemon
// read a file of the caller's choosing.
var logged = map[string]bool{
	controlproto.CmdAddRule:     true,
	controlproto.CmdRemoveRule:  true,
	controlproto.CmdLoadConfig:  true,
	controlproto.CmdSaveConfig:  true,
	controlproto.CmdCheckConfig: true,
	controlproto.CmdSetLogLevel: true,
}

// attrs are the log attributes naming p.
func (p peer) attrs() []any {
	if !p.known {
		return []any{"peer", "unknown"}
	}
	return []any{"peer_pid", p.pid, "peer_uid", p.uid, "peer_gid", p.gid}
}

// requestAttrs are the log attributes of a logged request: its command,
// its sender, and the config file it names (cut short like values in
// error messages) or the number of rules it carries inline.
func (p peer) requestAttrs(req controlproto.Request) []any {
	attrs := append([]any{"command", req.Command}, p.attrs()...)
	switch {
	case req.Path != "":
		attrs = append(attrs, "path", jsontext.Cut(req.Path))
	case req.Config != nil:
		attrs = append(attrs, "config", "inline", "rules", len(req.Config.Rules))
	}
	return attrs
}

// logRequest logs a logged request with its sender's credentials, before
// it is handled.
func (p peer) logRequest(log *slog.Logger, req controlproto.Request) {
	if logged[req.Command] {
		log.Info("control request", p.requestAttrs(req)...)
	}
}

// logFailure logs a logged request that failed, with its sender and the
// error it was answered with.
func (p peer) logFailure(log *slog.Logger, req controlproto.Request, resp controlproto.Response) {
	if logged[req.Command] && resp.Error != nil {
		log.Warn("control request failed", append(p.requestAttrs(req), "code", resp.Error.Code, "err", resp.Error.Message)...)
	}
}
