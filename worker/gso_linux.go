package worker

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segCmsg is the control message of a UDP_SEGMENT send: struct cmsghdr
// and the u16 segment size, padded to CMSG_SPACE(2).
type segCmsg struct {
	hdr  unix.Cmsghdr
	size uint16
	_    [6]byte
}

// segCmsgLen is CMSG_LEN(2), the only cmsg_len udp_cmsg_send accepts.
const segCmsgLen = unix.SizeofCmsghdr + 2

// set makes c say "cut into seg-byte datagrams".
func (c *segCmsg) set(seg int) {
	c.hdr.Level, c.hdr.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	c.hdr.SetLen(segCmsgLen)
	c.size = uint16(seg)
}

// attach points msg's control data at c.
func (c *segCmsg) attach(msg *unix.Msghdr) {
	msg.Control = (*byte)(unsafe.Pointer(c))
	msg.SetControllen(int(unsafe.Sizeof(*c)))
}

// probeGSO returns how many datagrams one UDP_SEGMENT send may carry on
// this kernel (gsoMaxSegments or 64), or 0 and why when UDP GSO is
// unusable. It sends 128, then 64 one-byte datagrams as one send to a
// socket of its own on the loopback interface: the kernel refuses more
// than UDP_MAX_SEGMENTS segments with EINVAL. Without a usable loopback it
// assumes 64, the limit of every kernel with UDP GSO, and says why.
func probeGSO() (maxSegs int, err error) {
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
	var c segCmsg
	c.set(1)
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c))
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

// egressMTU returns the path MTU of a connected UDP socket (IP_MTU,
// IPV6_MTU: ip(7), ipv6(7)), which is what the kernel checks a segment
// against, or else the MTU of the interface it is bound to.
func egressMTU(fd, ifindex int, v6 bool) (int, error) {
	level, opt := unix.IPPROTO_IP, unix.IP_MTU
	if v6 {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MTU
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err == nil && mtu > 0 {
		return mtu, nil
	}
	ifi, ierr := net.InterfaceByIndex(ifindex)
	if ierr != nil {
		return 0, fmt.Errorf("read MTU of ifindex %d: %w", ifindex, errors.Join(err, ierr))
	}
	return ifi.MTU, nil
}

// setGSO sets the UDP_SEGMENT limits of the freshly opened socket of e.
// A socket whose MTU cannot be read sends one datagram per send.
func (w *worker) setGSO(e *egress) {
	e.gso = gsoLimits{}
	if w.gsoSegs == 0 {
		return
	}
	v6 := e.key.Dst.Addr().Is6()
	mtu, err := egressMTU(e.fd, e.key.IfIndex, v6)
	if err != nil {
		w.log.Warn("no UDP GSO on output", "output", e.key.String(), "err", err)
		return
	}
	e.gso = newGSOLimits(w.gsoSegs, mtu, v6)
}

// gsoRefused handles a UDP_SEGMENT send of seg-byte datagrams on eg that
// the kernel refused with errno (gsoRefused(errno) holds): it narrows the
// socket's limits to a smaller MTU, or switches GSO off on the socket,
// logged and counted once. The caller sends the datagrams again; they no
// longer form a run of that size. Sends already in flight may report the
// same refusal again: then nothing changes.
func (w *worker) gsoRefused(eg *egress, errno unix.Errno, seg int) {
	if eg.gso.maxSegs == 0 || seg > eg.gso.maxSeg || eg.fd < 0 {
		return
	}
	v6 := eg.key.Dst.Addr().Is6()
	mtu := 0
	if errno == unix.EMSGSIZE {
		mtu, _ = egressMTU(eg.fd, eg.key.IfIndex, v6)
	}
	l, off := eg.gso.afterRefusal(errno, seg, mtu, v6)
	eg.gso = l
	if !off {
		w.log.Info("output MTU shrank: larger datagrams leave one per send",
			"output", eg.key.String(), "mtu", mtu, "max_segment", l.maxSeg)
		return
	}
	w.d.c.GSOFallbacks++
	w.log.Warn("UDP GSO refused: output falls back to one datagram per send",
		"output", eg.key.String(), "err", errno)
}

// refreshGSO reads the MTU of every socket that uses GSO again, so that
// one whose MTU grew back after a refusal (gsoRefused) segments larger
// datagrams again. Sockets on which GSO was refused stay off.
func (w *worker) refreshGSO() {
	for _, e := range w.db.egress {
		if e.fd < 0 || e.gso.maxSegs == 0 {
			continue
		}
		v6 := e.key.Dst.Addr().Is6()
		if mtu, err := egressMTU(e.fd, e.key.IfIndex, v6); err == nil {
			e.gso = newGSOLimits(w.gsoSegs, mtu, v6)
		}
	}
}

// probeGSO probes the kernel's UDP GSO once and logs the outcome.
func (w *worker) probeGSO() {
	n, err := probeGSO()
	w.gsoSegs = n
	switch {
	case err != nil && n == 0:
		w.log.Warn("no UDP GSO: one datagram per send", "err", err)
	case err != nil:
		w.log.Warn("UDP GSO", "max_segments", n, "err", err)
	default:
		w.log.Info("UDP GSO", "max_segments", n)
	}
}
