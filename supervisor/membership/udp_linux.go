package membership

import (
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpGroupSocket is a helper socket for memberships: a UDP socket that is
// never bound to a port. Group membership is per socket and interface
// (ip(7) IP_ADD_MEMBERSHIP, ipv6(7) IPV6_ADD_MEMBERSHIP) and makes the
// kernel send IGMP/MLD reports; delivery to a UDP socket needs a bound
// port (the kernel looks receivers up by destination port), so an unbound
// socket holds memberships and receives nothing. A socket bound to a data
// port would get a second copy of every relayed datagram.
type udpGroupSocket struct {
	fd int
	v6 bool
}

// OpenUDP is the Opener of the real daemon.
func OpenUDP(ifindex int, v6 bool) (Socket, error) {
	family, name := unix.AF_INET, "IGMP"
	if v6 {
		family, name = unix.AF_INET6, "MLD"
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("open %s helper socket for ifindex %d: %w", name, ifindex, err)
	}
	return &udpGroupSocket{fd: fd, v6: v6}, nil
}

// membershipOpts names the options that join (or leave) a group:
// source-specific, IPv6 any-source, IPv4 any-source.
type membershipOpts struct {
	source, v6, v4             int
	sourceName, v6Name, v4Name string
}

var (
	joinOpts = membershipOpts{unix.MCAST_JOIN_SOURCE_GROUP, unix.IPV6_ADD_MEMBERSHIP, unix.IP_ADD_MEMBERSHIP,
		"MCAST_JOIN_SOURCE_GROUP", "IPV6_ADD_MEMBERSHIP", "IP_ADD_MEMBERSHIP"}
	leaveOpts = membershipOpts{unix.MCAST_LEAVE_SOURCE_GROUP, unix.IPV6_DROP_MEMBERSHIP, unix.IP_DROP_MEMBERSHIP,
		"MCAST_LEAVE_SOURCE_GROUP", "IPV6_DROP_MEMBERSHIP", "IP_DROP_MEMBERSHIP"}
)

// Join joins g. Any-source joins use IP_ADD_MEMBERSHIP with struct ip_mreqn
// (which names the interface by index) or IPV6_ADD_MEMBERSHIP;
// source-specific joins use MCAST_JOIN_SOURCE_GROUP (RFC 3678), whose
// struct group_source_req names the interface by index for both families
// (IP_ADD_SOURCE_MEMBERSHIP would need an interface address, and input
// interfaces often have none).
func (s *udpGroupSocket) Join(g Group) error { return s.set(joinOpts, g) }

// Leave leaves g, the way Join joined it.
func (s *udpGroupSocket) Leave(g Group) error { return s.set(leaveOpts, g) }

// set sets the option of o that fits g and the socket's family.
func (s *udpGroupSocket) set(o membershipOpts, g Group) error {
	switch {
	case g.Source.IsValid():
		return s.setSourceGroup(o.sourceName, o.source, g)
	case s.v6:
		return optError(o.v6Name, unix.SetsockoptIPv6Mreq(s.fd, unix.IPPROTO_IPV6, o.v6, ipv6Mreq(g)))
	}
	return optError(o.v4Name, unix.SetsockoptIPMreqn(s.fd, unix.IPPROTO_IP, o.v4, ipMreqn(g)))
}

// optError names the socket option that failed; the caller names the group
// and interface.
func optError(opt string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", opt, err)
	}
	return nil
}

func (s *udpGroupSocket) Close() error {
	if err := unix.Close(s.fd); err != nil {
		return fmt.Errorf("close membership socket: %w", err)
	}
	return nil
}

func ipMreqn(g Group) *unix.IPMreqn {
	return &unix.IPMreqn{Multiaddr: g.Addr.As4(), Ifindex: int32(g.Ifindex)}
}

func ipv6Mreq(g Group) *unix.IPv6Mreq {
	return &unix.IPv6Mreq{Multiaddr: g.Addr.As16(), Interface: uint32(g.Ifindex)}
}

// groupSourceReq is struct group_source_req of <linux/in.h>: the interface
// index, then two struct __kernel_sockaddr_storage (128 bytes, aligned to
// a pointer, hence the padding). x/sys/unix does not define it.
type groupSourceReq struct {
	Interface uint32
	_         [unsafe.Sizeof(uintptr(0)) - 4]byte
	Group     [128]byte
	Source    [128]byte
}

// setSourceGroup sets a source-specific option (MCAST_JOIN_SOURCE_GROUP,
// MCAST_LEAVE_SOURCE_GROUP) for g, at the socket's family's level.
func (s *udpGroupSocket) setSourceGroup(name string, opt int, g Group) error {
	req := groupSourceReq{Interface: uint32(g.Ifindex)}
	putSockaddr(req.Group[:], g.Addr)
	putSockaddr(req.Source[:], g.Source)
	level := unix.IPPROTO_IP
	if s.v6 {
		level = unix.IPPROTO_IPV6
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(s.fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&req)), unsafe.Sizeof(req), 0)
	if errno != 0 {
		return optError(name, errno)
	}
	return nil
}

// putSockaddr writes a as a struct sockaddr_in or sockaddr_in6 (port 0)
// into b.
func putSockaddr(b []byte, a netip.Addr) {
	if a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b[0]))
		sa.Family = unix.AF_INET
		sa.Addr = a.As4()
		return
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&b[0]))
	sa.Family = unix.AF_INET6
	sa.Addr = a.As16()
}
