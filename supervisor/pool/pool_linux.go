package pool

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
)

// statsPipeSize is the stats pipe's capacity (F_SETPIPE_SZ). A worker never
// blocks on its stats pipe, it drops snapshots when the pipe is full; a
// large pipe makes that rare when the supervisor is busy. Up to
// /proc/sys/fs/pipe-max-size (default 1 MiB) it needs no privilege.
const statsPipeSize = 1 << 20

// spawn starts a worker process for slot s:
//
//	Exe worker --id N --core C --backend B --stats-interval D [--user U]
//
// with exactly four inherited fds besides stdio, by position: fd 3 its end
// of the command socketpair, fd 4 the write end of the stats pipe, fd 5 the
// write end of the log pipe, fd 6 its end of the socket socketpair, on
// which it asks for every socket it relays on (controlproto.CommandFD,
// StatsFD, LogFD, SocketFD; see serveSockets). Every fd the supervisor
// opens is close-on-exec; exec dup2s these four into place in the child
// only. The worker's stderr is its log pipe too, so a
// crash trace from the Go runtime reaches the supervisor's log, with the
// worker's id, instead of being lost. Stdin and stdout are /dev/null.
//
// The worker gets SIGKILL when the thread calling spawn exits (the caller
// locks it for the worker's life, see runSlot), and its own process group,
// so a ^C at a terminal reaches only the supervisor, which then shuts the
// workers down in order.
func (p *Pool) spawn(s *workerSlot) (*workerProc, error) {
	var opened []io.Closer // closed on failure
	fail := func(err error) (*workerProc, error) {
		for _, f := range opened {
			f.Close()
		}
		return nil, fmt.Errorf("spawn worker %d: %w", s.id, err)
	}
	cmdSup, cmdWorker, err := commandSocketpair(s.id)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, cmdSup, cmdWorker)
	sockSup, sockWorker, err := socketSocketpair(s.id)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, sockSup, sockWorker)
	statsR, statsW, err := workerPipe(s.id, "stats")
	if err != nil {
		return fail(err)
	}
	opened = append(opened, statsR, statsW)
	logR, logW, err := workerPipe(s.id, "log")
	if err != nil {
		return fail(err)
	}
	opened = append(opened, logR, logW)
	if err := setPipeSize(statsR, statsPipeSize); err != nil {
		p.log.Debug("enlarge stats pipe", "worker", s.id, "size", statsPipeSize, "err", err)
	}

	args := []string{"worker",
		"--id", strconv.Itoa(s.id),
		"--core", strconv.Itoa(s.core),
		"--backend", p.cfg.Backend,
		"--stats-interval", p.cfg.StatsInterval.String()}
	if p.cfg.WorkerUser != "" {
		args = append(args, "--user", p.cfg.WorkerUser)
	}
	if n := p.cfg.RingBlocks; n != 0 {
		args = append(args, "--rx-ring-blocks", strconv.Itoa(max(n, 0)))
	}
	if p.cfg.RingTimeout != 0 {
		args = append(args, "--rx-ring-timeout", p.cfg.RingTimeout.String())
	}
	if p.cfg.RxRing != "" {
		args = append(args, "--rx-ring", p.cfg.RxRing)
	}
	if p.cfg.RingFrames != 0 {
		args = append(args, "--rx-ring-frames", strconv.Itoa(p.cfg.RingFrames))
	}
	if p.cfg.BusyPoll {
		args = append(args, "--busy-poll")
	}
	if p.cfg.Moderation != 0 {
		args = append(args, "--rx-moderation", p.cfg.Moderation.String())
	}
	if p.cfg.SocketRetry != 0 {
		args = append(args, "--socket-retry", p.cfg.SocketRetry.String())
	}
	cmd := exec.Command(p.cfg.Exe, args...)
	cmd.Env = append(os.Environ(), p.cfg.ExtraEnv...)
	files := make([]*os.File, 4)
	files[controlproto.CommandFD-3] = cmdWorker
	files[controlproto.StatsFD-3] = statsW
	files[controlproto.LogFD-3] = logW
	files[controlproto.SocketFD-3] = sockWorker
	cmd.ExtraFiles = files
	cmd.Stderr = logW
	// With p.cred the child switches to the worker user before execve
	// (Go sets the parent-death signal after the switch, which would
	// clear it); the thread forking it gave it no_new_privs and an empty
	// bounding set (restrictSpawnThread).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	started := time.Now()
	// The worker holds its ends now; closing ours makes the pipes end
	// when the worker does.
	cmdWorker.Close()
	sockWorker.Close()
	statsW.Close()
	logW.Close()
	w := &workerProc{
		slot:     s.id,
		pid:      cmd.Process.Pid,
		cmd:      cmd,
		started:  started,
		log:      p.log.With("worker", s.id, "pid", cmd.Process.Pid),
		commands: cmdSup,
		sockets:  sockSup,
		statsR:   statsR,
		logR:     logR,
	}
	w.queue = newCmdQueue(p.limit)
	return w, nil
}

// commandSocketpair returns the two ends of a worker's command socket
// (AF_UNIX SOCK_STREAM, close-on-exec): the supervisor's, non-blocking so
// that Go's poller serves it and Close wakes a blocked Write, and the
// worker's, blocking (the worker sets its own mode).
func commandSocketpair(id int) (sup, worker *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create command socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create command socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("worker-%d-commands", id)),
		os.NewFile(uintptr(fds[1]), fmt.Sprintf("worker-%d-commands-child", id)), nil
}

// socketSocketpair returns the two ends of a worker's socket socketpair
// (AF_UNIX SOCK_STREAM, close-on-exec): the supervisor's, served by
// relaysock.Serve through Go's poller, and the worker's.
func socketSocketpair(id int) (sup *net.UnixConn, worker *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create socket socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), fmt.Sprintf("worker-%d-sockets", id))
	c, err := net.FileConn(f) // a dup: f is closed either way
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create socket socketpair: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), fmt.Sprintf("worker-%d-sockets-child", id)), nil
}

// workerPipe returns a close-on-exec pipe whose read end, the supervisor's,
// is non-blocking for Go's poller; the write end is the worker's.
func workerPipe(id int, name string) (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("create %s pipe: %w", name, err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create %s pipe: %w", name, err)
	}
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("worker-%d-%s", id, name)),
		os.NewFile(uintptr(fds[1]), fmt.Sprintf("worker-%d-%s-child", id, name)), nil
}

// setPipeSize sets the capacity of pipe f (fcntl(2) F_SETPIPE_SZ). It goes
// through SyscallConn because f.Fd would make f blocking.
func setPipeSize(f *os.File, size int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("set pipe size: %w", err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		_, opErr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return fmt.Errorf("set pipe size: %w", err)
	}
	return nil
}

// commandsRead reports whether the worker has read everything written to
// its command socket f. SIOCOUTQ on an AF_UNIX stream socket counts the
// memory of sent data still queued at the receiver, an skb until it is read
// in full (net/unix/af_unix.c unix_outq_len); it is 0 exactly when nothing
// is left.
func commandsRead(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("get command socket queue: %w", err)
	}
	var n int
	var opErr error
	err = rc.Control(func(fd uintptr) {
		n, opErr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return false, fmt.Errorf("get command socket queue: %w", err)
	}
	return n == 0, nil
}
