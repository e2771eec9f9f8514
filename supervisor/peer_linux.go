package supervisor

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
)

// setSocketGroup gives the control socket at path to group name, whose
// members may then connect (the socket's mode is 0660).
func setSocketGroup(path, name string) error {
	g, err := user.LookupGroup(name)
	if err != nil {
		return fmt.Errorf("socket group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("socket group %s: gid %q: %w", name, g.Gid, err)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("set control socket group: %w", err)
	}
	return nil
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

// mutating are the requests that change the daemon's state: each is logged
// with who sent it.
var mutating = map[string]bool{
	controlproto.CmdAddRule:     true,
	controlproto.CmdRemoveRule:  true,
	controlproto.CmdLoadConfig:  true,
	controlproto.CmdSaveConfig:  true,
	controlproto.CmdSetLogLevel: true,
}

// logRequest logs a mutating request with its sender's credentials.
func (p peer) logRequest(log *slog.Logger, req controlproto.Request) {
	if !mutating[req.Command] {
		return
	}
	if !p.known {
		log.Info("control request", "command", req.Command, "peer", "unknown")
		return
	}
	log.Info("control request", "command", req.Command, "peer_pid", p.pid, "peer_uid", p.uid, "peer_gid", p.gid)
}
