package worker

import (
	"encoding/binary"
	"net/netip"
)

// sockName is a destination as the msg_name of a send: the bytes of a
// Linux struct sockaddr_in (16 bytes) or sockaddr_in6 (28), the family in
// host byte order, the port in network byte order.
type sockName struct {
	b [28]byte
	n uint32 // bytes used
}

// Linux address families.
const (
	afInet  = 2
	afInet6 = 10
)

// set makes n name ap; a link-local IPv6 destination is scoped to
// ifindex.
func (n *sockName) set(ap netip.AddrPort, ifindex int) {
	*n = sockName{}
	a := ap.Addr()
	binary.BigEndian.PutUint16(n.b[2:], ap.Port())
	if a.Is4() {
		binary.NativeEndian.PutUint16(n.b[0:], afInet)
		a4 := a.As4()
		copy(n.b[4:8], a4[:])
		n.n = 16
		return
	}
	binary.NativeEndian.PutUint16(n.b[0:], afInet6)
	a16 := a.As16()
	copy(n.b[8:24], a16[:])
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		binary.NativeEndian.PutUint32(n.b[24:], uint32(ifindex))
	}
	n.n = 28
}
