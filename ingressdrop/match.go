package ingressdrop

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrUnsupported reports that the kernel cannot attach tcx ingress links
// (BPF_TCX_INGRESS, Linux 6.6), or that the OS is not Linux.
var ErrUnsupported = errors.New("exclusive inputs need tcx ingress links (Linux 6.6 or later)")

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("ingress dropper closed")

// Match is one relayed input stream that the kernel's receive path should
// no longer see: UDP datagrams to Group:Port from Source, or from any
// source when Source is the zero Addr. Group may be multicast or unicast,
// IPv4 or IPv6, as a rule's input may.
type Match struct {
	Group  netip.Addr
	Port   uint16
	Source netip.Addr
}

func (m Match) String() string {
	s := netip.AddrPortFrom(m.Group, m.Port).String()
	if m.Source.IsValid() {
		s += " from " + m.Source.String()
	}
	return s
}

// keySize is the size of a key of the program's rules map.
const keySize = 36

// key is a Match as the program looks it up: source address (16 bytes,
// zero for any source), destination address (16 bytes), destination port
// (2 bytes, network byte order), 2 bytes of zero padding. IPv4 addresses
// are IPv4-mapped IPv6 addresses (::ffff:a.b.c.d), as in ruleset.Key, so
// that one map serves both families; the offsets are those the program's
// stack layout uses (see program_linux.go).
type key [keySize]byte

// key encodes m. m must be valid (see validate).
func (m Match) key() key {
	var k key
	if m.Source.IsValid() {
		src := m.Source.As16()
		copy(k[0:16], src[:])
	}
	dst := m.Group.As16()
	copy(k[16:32], dst[:])
	k[32], k[33] = byte(m.Port>>8), byte(m.Port)
	return k
}

// validate reports what keeps m from being a key: no group, port 0, or a
// source of the other family.
func (m Match) validate() error {
	switch {
	case !m.Group.IsValid():
		return fmt.Errorf("match %v: no group", m)
	case m.Port == 0:
		return fmt.Errorf("match %v: port 0", m)
	case m.Source.IsValid() && m.Source.Unmap().Is4() != m.Group.Unmap().Is4():
		return fmt.Errorf("match %v: source and group of different families", m)
	}
	return nil
}

// keys encodes matches as a set, checking each.
func keys(matches []Match) (map[key]struct{}, error) {
	set := make(map[key]struct{}, len(matches))
	for _, m := range matches {
		if err := m.validate(); err != nil {
			return nil, err
		}
		set[m.key()] = struct{}{}
	}
	return set, nil
}

// capacityFor is the number of entries a rules map is created with for n
// matches: a power of two, at least 64, so that a growing set rebuilds the
// map rarely.
func capacityFor(n int) int {
	c := 64
	for c < n {
		c *= 2
	}
	return c
}
