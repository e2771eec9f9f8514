package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeUDPSegments returns how many datagrams one UDP_SEGMENT send may
// carry on this kernel (gsoMaxSegments or 64), or 0 and why when UDP GSO
// is unusable. It sends 128, then 64 one-byte datagrams as one send to a
// socket of its own on the loopback interface: the kernel refuses more
// than UDP_MAX_SEGMENTS segments with EINVAL. Without a usable loopback it
// assumes 64, the limit of every kernel with UDP GSO, and says why.
func probeUDPSegments() (maxSegs int, err error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open UDP socket: %w", err)
	}
	defer unix.Close(s)
	if _, err := unix.GetsockoptInt(s, unix.SOL_UDP, unix.UDP_SEGMENT); err != nil {
		return 0, fmt.Errorf("kernel lacks UDP_SEGMENT (Linux 4.18+): %w", err)
	}
	r, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open UDP socket: %w", err)
	}
	defer unix.Close(r)
	if err := unix.Bind(r, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 64, fmt.Errorf("bind to loopback, assuming 64 segments: %w", err)
	}
	sa, err := unix.Getsockname(r)
	if err == nil {
		err = unix.Connect(s, sa)
	}
	if err != nil {
		return 64, fmt.Errorf("connect on loopback, assuming 64 segments: %w", err)
	}
	var c sendCtl
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c)), c.set(1, 0, false))
	buf := make([]byte, gsoMaxSegments)
	for n := gsoMaxSegments; n >= 64; n /= 2 {
		_, err = unix.SendmsgN(s, buf[:n], oob, nil, unix.MSG_DONTWAIT)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return 64, fmt.Errorf("send on loopback, assuming 64 segments: %w", err)
		}
	}
	return 0, fmt.Errorf("kernel refuses 64 segments per send: %w", err)
}

// gsoSegments probes the kernel's UDP GSO once (probeUDPSegments) and logs
// the outcome.
func gsoSegments(log *slog.Logger) int {
	n, err := probeUDPSegments()
	switch {
	case err != nil && n == 0:
		log.Warn("no UDP GSO: one datagram per send", "err", err)
	case err != nil:
		log.Warn("UDP GSO", "max_segments", n, "err", err)
	default:
		log.Info("UDP GSO", "max_segments", n)
	}
	return n
}

// interfaceMTU returns the MTU of the interface with ifindex, asked with
// ioctl(2) on fd, any socket (netdevice(7): SIOCGIFNAME, SIOCGIFMTU). An
// egress socket is not connected, so it has no path MTU (IP_MTU); the
// kernel checks a UDP_SEGMENT run against the route's, which is the
// interface's unless a route says less (then the kernel refuses the run
// and narrowGSO switches GSO off on the socket).
func interfaceMTU(fd, ifindex int) (int, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return 0, err
	}
	ifr.SetUint32(uint32(ifindex))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return 0, fmt.Errorf("name of ifindex %d: %w", ifindex, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("MTU of %s: %w", ifr.Name(), err)
	}
	return int(ifr.Uint32()), nil
}

// narrowGSO handles a UDP_SEGMENT send of seg-byte datagrams on eg that
// the kernel refused with errno (refusesGSO(errno) holds): it narrows the
// socket's limits to its interface's MTU when that shrank below the
// segment, or else switches GSO off on the socket, logged and counted
// once. The caller sends the datagrams again; they no longer form a run of
// that size. Sends already in flight may report the same refusal again:
// then nothing changes.
func (w *worker) narrowGSO(eg *egress, errno unix.Errno, seg int) {
	if eg.gso.maxSegs == 0 || seg > eg.gso.maxSeg || eg.fd < 0 {
		return
	}
	if mtu, err := interfaceMTU(eg.fd, eg.key.IfIndex); err == nil {
		eg.mtu = mtu
	}
	l, off := eg.gso.afterRefusal(seg, eg.mtu, eg.key.V6)
	eg.gso, eg.gsoOff = l, off
	if !off {
		w.log.Info("output MTU shrank: larger datagrams leave one per send",
			"socket", eg.key.String(), "mtu", eg.mtu, "max_segment", l.maxSeg)
		return
	}
	w.d.c.GSOFallbacks++
	w.log.Warn("UDP GSO refused: the socket's outputs fall back to one datagram per send",
		"socket", eg.key.String(), "err", errno)
}

// refreshGSO reads the MTU of every egress socket again, so that one whose
// MTU grew back after a refusal (narrowGSO) segments larger datagrams
// again. Sockets on which GSO was refused stay off. An MTU that shrank
// since is logged as narrowGSO logs it: whichever finds it first says so.
func (w *worker) refreshGSO() {
	for _, e := range w.db.egress {
		if e.fd < 0 || e.key.Raw {
			continue
		}
		if mtu, err := interfaceMTU(e.fd, e.key.IfIndex); err == nil {
			shrank := mtu < e.mtu
			e.mtu = mtu
			e.setGSO(w.db.gsoSegs)
			if shrank && e.gso.maxSegs > 0 {
				w.log.Info("output MTU shrank: larger datagrams leave one per send",
					"socket", e.key.String(), "mtu", e.mtu, "max_segment", e.gso.maxSeg)
			}
		}
	}
}
