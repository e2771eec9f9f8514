package worker

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// sndBufSize is the send buffer of each egress socket, so that a burst
// from one receive batch never finds it full.
const sndBufSize = 4 << 20

// openEgressSocket opens the UDP socket of one output: its family is the
// destination's; it is bound to the output interface (SO_BINDTOIFINDEX,
// so unicast leaves there too), multicast goes out that interface with the
// given TTL (default 1) and without loopback, unicast gets the TTL only
// when one is set, the send buffer is large, it is bound to the source
// address when one is set, and it is connected to the destination so each
// send skips the route lookup and needs no address.
func openEgressSocket(k egressKey) (fd int, err error) {
	dst := k.dst.Addr()
	family, ipLevel := unix.AF_INET, unix.IPPROTO_IP
	if dst.Is6() {
		family, ipLevel = unix.AF_INET6, unix.IPPROTO_IPV6
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open UDP socket: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, k.ifindex); err != nil {
		return -1, fmt.Errorf("bind to interface %d: %w", k.ifindex, err)
	}
	if err := setHops(fd, ipLevel, dst, k); err != nil {
		return -1, err
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sndBufSize); err != nil {
		return -1, fmt.Errorf("set send buffer: %w", err)
	}
	if k.src.IsValid() {
		if k.src.Is6() != dst.Is6() {
			return -1, fmt.Errorf("source %v and destination %v differ in family", k.src, dst)
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(k.src, 0), k.ifindex)); err != nil {
			return -1, fmt.Errorf("bind to source %v: %w", k.src, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(k.dst, k.ifindex)); err != nil {
		return -1, fmt.Errorf("connect to %v: %w", k.dst, err)
	}
	return fd, checkSource(fd)
}

// setHops sets the multicast interface, TTL or hop limit and loopback.
func setHops(fd, level int, dst netip.Addr, k egressKey) error {
	v6 := dst.Is6()
	set := func(what string, opt, v int) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("set %s: %w", what, err)
		}
		return nil
	}
	loop := unix.IP_MULTICAST_LOOP
	if v6 {
		loop = unix.IPV6_MULTICAST_LOOP
	}
	if err := set("multicast loop", loop, 0); err != nil {
		return err
	}
	if !dst.IsMulticast() {
		switch {
		case k.ttl == 0:
			return nil
		case v6:
			return set("unicast hop limit", unix.IPV6_UNICAST_HOPS, k.ttl)
		}
		return set("TTL", unix.IP_TTL, k.ttl)
	}
	ttl := max(k.ttl, 1)
	if v6 {
		if err := set("multicast interface", unix.IPV6_MULTICAST_IF, k.ifindex); err != nil {
			return err
		}
		return set("multicast hop limit", unix.IPV6_MULTICAST_HOPS, ttl)
	}
	mreq := &unix.IPMreqn{Ifindex: int32(k.ifindex)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
		return fmt.Errorf("set multicast interface: %w", err)
	}
	return set("multicast TTL", unix.IP_MULTICAST_TTL, ttl)
}

// checkSource fails when the connected socket got no source address: the
// kernel connects a multicast socket on an interface without an address of
// the family and would then send from 0.0.0.0.
func checkSource(fd int) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("get source address: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Addr == [4]byte{} {
			return fmt.Errorf("no IPv4 source address for the output interface")
		}
	case *unix.SockaddrInet6:
		if a.Addr == [16]byte{} {
			return fmt.Errorf("no IPv6 source address for the output interface")
		}
	}
	return nil
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
