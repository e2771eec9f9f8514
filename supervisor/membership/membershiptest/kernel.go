package membershiptest

import (
	"fmt"
	"net/netip"
	"syscall"

	"github.com/mcrelay/mcr/supervisor/membership"
)

// Kernel stands in for the kernel's multicast membership bookkeeping
// of helper sockets: a per-socket cap on groups (igmp_max_memberships), a
// per-group cap on sources (igmp_max_msf), no mixing of any-source and
// source-specific joins of one group on one socket, and chosen failures.
type Kernel struct {
	MaxGroups  int
	MaxSources int
	Fail       map[netip.Addr]error // joins of these groups fail so
	Open       int                  // sockets open now
	Opened     int                  // sockets ever opened
}

// NewKernel returns a Kernel with these caps and no failures.
func NewKernel(maxGroups, maxSources int) *Kernel {
	return &Kernel{MaxGroups: maxGroups, MaxSources: maxSources, Fail: map[netip.Addr]error{}}
}

type groupSocket struct {
	k       *Kernel
	ifindex int
	v6      bool
	groups  map[netip.Addr]map[netip.Addr]bool // group → sources; {zero: true} = any source
	closed  bool
}

// OpenSocket is a membership.Opener over k.
func (k *Kernel) OpenSocket(ifindex int, v6 bool) (membership.Socket, error) {
	k.Open++
	k.Opened++
	return &groupSocket{k: k, ifindex: ifindex, v6: v6, groups: map[netip.Addr]map[netip.Addr]bool{}}, nil
}

func (s *groupSocket) Join(g membership.Group) error {
	switch {
	case s.closed:
		return syscall.EBADF
	case g.Ifindex != s.ifindex || g.Addr.Is6() != s.v6:
		return fmt.Errorf("membership %s on ifindex %d on the socket of ifindex %d v6=%v", g, g.Ifindex, s.ifindex, s.v6)
	case s.k.Fail[g.Addr] != nil:
		return s.k.Fail[g.Addr]
	}
	srcs := s.groups[g.Addr]
	if srcs == nil {
		if len(s.groups) >= s.k.MaxGroups {
			return syscall.ENOBUFS
		}
		srcs = map[netip.Addr]bool{}
		s.groups[g.Addr] = srcs
	}
	anySource := srcs[netip.Addr{}]
	switch {
	case len(srcs) > 0 && anySource != !g.Source.IsValid():
		return syscall.EINVAL // filter mode change
	case srcs[g.Source]:
		return syscall.EADDRINUSE
	case g.Source.IsValid() && len(srcs) >= s.k.MaxSources:
		return syscall.ENOBUFS
	}
	srcs[g.Source] = true
	return nil
}

func (s *groupSocket) Leave(g membership.Group) error {
	if !s.groups[g.Addr][g.Source] {
		return syscall.EADDRNOTAVAIL
	}
	delete(s.groups[g.Addr], g.Source)
	if len(s.groups[g.Addr]) == 0 {
		delete(s.groups, g.Addr)
	}
	return nil
}

func (s *groupSocket) Close() error {
	if s.closed {
		return syscall.EBADF
	}
	s.closed = true
	s.k.Open--
	return nil
}
