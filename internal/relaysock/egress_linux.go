package relaysock

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// SndBufSize is the send buffer of each egress socket, so that a burst
// from one receive batch never finds it full.
const SndBufSize = 4 << 20

// OpenEgress opens the socket of egress identity k: a raw IP socket when
// k.Raw (OpenRaw), else a UDP socket of k's family, not connected, bound to
// the output interface (SO_BINDTOIFINDEX, so that unicast leaves there too
// and the port is the interface's alone) and then to k's source address and
// port. Port 0 binds an ephemeral port: the kernel picks it, once, and it
// stays the identity's for as long as the socket lives. Multicast leaves
// that interface with TTL 1 by default (a send may set another) and without
// loopback, and the send buffer is large. The socket receives nothing: it
// takes no multicast it has not joined (IP_MULTICAST_ALL off) and a filter
// drops whatever else the port would get.
func OpenEgress(k EgressKey) (int, error) {
	if k.Raw {
		return OpenRaw(k.IfIndex, k.V6)
	}
	family := unix.AF_INET
	if k.V6 {
		family = unix.AF_INET6
	}
	if k.Src.IsValid() && k.Src.Is6() != k.V6 {
		return -1, fmt.Errorf("source %v is not %s", k.Src, familyName(k.V6))
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open UDP socket: %w", err)
	}
	if err := setupEgress(fd, k); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func setupEgress(fd int, k EgressKey) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, k.IfIndex); err != nil {
		return fmt.Errorf("bind to interface %d: %w", k.IfIndex, err)
	}
	if k.V6 {
		// An IPv6 socket on port P would otherwise hold P for IPv4 too.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("set IPV6_V6ONLY: %w", err)
		}
	}
	if err := setMulticast(fd, k.IfIndex, k.V6); err != nil {
		return err
	}
	if err := setQuiet(fd, k.V6); err != nil {
		return err
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, SndBufSize); err != nil {
		return fmt.Errorf("set send buffer: %w", err)
	}
	src := k.Src
	if !src.IsValid() {
		src = netip.IPv4Unspecified()
		if k.V6 {
			src = netip.IPv6Unspecified()
		}
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, uint16(k.Port)), k.IfIndex)); err != nil {
		return fmt.Errorf("bind to source %s: %w", k.source(), err)
	}
	return nil
}

// OpenRaw opens the raw IP socket a worker sends transparent outputs on
// (EgressKey.Raw): the worker writes each datagram's IP and UDP headers
// (IPv4: IPPROTO_RAW implies IP_HDRINCL, raw(7); IPv6: IPV6_HDRINCL, Linux
// 4.5). It is bound to the output interface, multicast leaves there
// without loopback, the send buffer is large, and it receives nothing.
// Opening one needs CAP_NET_RAW.
func OpenRaw(ifindex int, v6 bool) (int, error) {
	fd, err := openRaw(v6)
	if err != nil {
		return -1, err
	}
	if err := setupRaw(fd, ifindex, v6); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ProbeRaw reports whether this process can open the raw sockets of
// transparent outputs of one family, and why not.
func ProbeRaw(v6 bool) error {
	fd, err := openRaw(v6)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func openRaw(v6 bool) (int, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("open raw %s socket: %w", familyName(v6), err)
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set IPV6_HDRINCL (Linux 4.5): %w", err)
		}
	}
	return fd, nil
}

func setupRaw(fd, ifindex int, v6 bool) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, ifindex); err != nil {
		return fmt.Errorf("bind to interface %d: %w", ifindex, err)
	}
	if err := setMulticast(fd, ifindex, v6); err != nil {
		return err
	}
	if err := setQuiet(fd, v6); err != nil {
		return err
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, SndBufSize); err != nil {
		return fmt.Errorf("set send buffer: %w", err)
	}
	return nil
}

// setMulticast makes multicast leave interface ifindex, by default with TTL
// or hop limit 1, and not loop back to the host.
func setMulticast(fd, ifindex int, v6 bool) error {
	set := func(what string, level, opt, v int) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("set %s: %w", what, err)
		}
		return nil
	}
	if v6 {
		if err := set("multicast interface", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
			return err
		}
		if err := set("multicast hop limit", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1); err != nil {
			return err
		}
		return set("multicast loop", unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0)
	}
	mreq := &unix.IPMreqn{Ifindex: int32(ifindex)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
		return fmt.Errorf("set multicast interface: %w", err)
	}
	if err := set("multicast TTL", unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1); err != nil {
		return err
	}
	return set("multicast loop", unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)
}

// dropAll is a socket filter that drops every packet (ret #0).
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// setQuiet makes an egress socket receive nothing. A socket bound to a
// port on any address would otherwise queue every datagram to that port
// on its interface, including multicast of groups other sockets joined
// (IP_MULTICAST_ALL is on by default, ip(7)), until its receive buffer
// fills.
func setQuiet(fd int, v6 bool) error {
	level, opt := unix.IPPROTO_IP, unix.IP_MULTICAST_ALL
	if v6 {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL
	}
	if err := unix.SetsockoptInt(fd, level, opt, 0); err != nil {
		return fmt.Errorf("clear multicast all: %w", err)
	}
	prog := &unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog); err != nil {
		return fmt.Errorf("attach drop filter: %w", err)
	}
	return nil
}

// BoundPort returns the port socket fd is bound to: an egress socket's
// source port; 0 for a socket without one (raw, unbound, not IP).
func BoundPort(fd int) int {
	switch sa, _ := unix.Getsockname(fd); sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// sockaddr converts ap, scoping link-local IPv6 addresses to ifindex.
func sockaddr(ap netip.AddrPort, ifindex int) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		sa.ZoneId = uint32(ifindex)
	}
	return sa
}
