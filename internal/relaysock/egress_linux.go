package relaysock

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// SndBufSize is the send buffer of each egress socket, so that a burst
// from one receive batch never finds it full.
const SndBufSize = 4 << 20

// OpenEgress opens the UDP socket of one output: its family is the
// destination's; it is bound to the output interface (SO_BINDTOIFINDEX,
// so unicast leaves there too), multicast goes out that interface with the
// given TTL (default 1) and without loopback, unicast gets the TTL only
// when one is set, the send buffer is large, it is bound to the source
// address when one is set, and it is connected to the destination so each
// send skips the route lookup and needs no address.
func OpenEgress(k EgressKey) (int, error) {
	dst := k.Dst.Addr()
	family, ipLevel := unix.AF_INET, unix.IPPROTO_IP
	if dst.Is6() {
		family, ipLevel = unix.AF_INET6, unix.IPPROTO_IPV6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open UDP socket: %w", err)
	}
	if err := setUpEgress(fd, ipLevel, k); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setUpEgress makes the fresh socket fd the egress socket of k; the caller
// closes fd when it fails.
func setUpEgress(fd, ipLevel int, k EgressKey) error {
	dst := k.Dst.Addr()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, k.IfIndex); err != nil {
		return fmt.Errorf("bind to interface %d: %w", k.IfIndex, err)
	}
	if err := setHops(fd, ipLevel, dst, k); err != nil {
		return err
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, SndBufSize); err != nil {
		return fmt.Errorf("set send buffer: %w", err)
	}
	if k.Src.IsValid() {
		if k.Src.Is6() != dst.Is6() {
			return fmt.Errorf("source %v and destination %v differ in family", k.Src, dst)
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(k.Src, 0), k.IfIndex)); err != nil {
			return fmt.Errorf("bind to source %v: %w", k.Src, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(k.Dst, k.IfIndex)); err != nil {
		return fmt.Errorf("connect to %v: %w", k.Dst, err)
	}
	return checkSource(fd)
}

// setHops sets the multicast interface, TTL or hop limit and loopback.
func setHops(fd, level int, dst netip.Addr, k EgressKey) error {
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
		case k.TTL == 0:
			return nil
		case v6:
			return set("unicast hop limit", unix.IPV6_UNICAST_HOPS, k.TTL)
		}
		return set("TTL", unix.IP_TTL, k.TTL)
	}
	ttl := max(k.TTL, 1)
	if v6 {
		if err := set("multicast interface", unix.IPV6_MULTICAST_IF, k.IfIndex); err != nil {
			return err
		}
		return set("multicast hop limit", unix.IPV6_MULTICAST_HOPS, ttl)
	}
	mreq := &unix.IPMreqn{Ifindex: int32(k.IfIndex)}
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
