package worker

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ctlMsg is one control message of a send: struct cmsghdr and room for an
// int, CMSG_SPACE(4) bytes (CMSG_SPACE(2) is the same).
type ctlMsg struct {
	hdr  unix.Cmsghdr
	data [8]byte
}

// sendCtl is the control data of one send on a UDP socket: a UDP_SEGMENT
// segment size for a run (udp(7)), and an IP_TTL or IPV6_HOPLIMIT for an
// output with a TTL of its own (ip(7), ipv6(7)), which a send may set
// since the socket is shared by outputs with different ones.
type sendCtl struct {
	c [2]ctlMsg
}

// set fills c for a run of seg-byte datagrams (0: not a run) with TTL or
// hop limit ttl (0: the socket's) and returns the bytes of control data
// used, 0 for none.
func (c *sendCtl) set(seg, ttl int, v6 bool) int {
	n := 0
	if seg > 0 {
		m := &c.c[n]
		m.hdr.Level, m.hdr.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		// CMSG_LEN(2): the only length udp_cmsg_send accepts.
		m.hdr.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(m.data[:], uint16(seg))
		n++
	}
	if ttl > 0 {
		m := &c.c[n]
		m.hdr.Level, m.hdr.Type = unix.IPPROTO_IP, unix.IP_TTL
		if v6 {
			m.hdr.Level, m.hdr.Type = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
		}
		m.hdr.SetLen(unix.CmsgLen(4))
		binary.NativeEndian.PutUint32(m.data[:], uint32(ttl))
		n++
	}
	return n * int(unsafe.Sizeof(ctlMsg{}))
}

// attach points msg's control data at the first n bytes of c (none for 0).
func (c *sendCtl) attach(msg *unix.Msghdr, n int) {
	if n == 0 {
		msg.Control = nil
		msg.SetControllen(0)
		return
	}
	msg.Control = (*byte)(unsafe.Pointer(&c.c[0]))
	msg.SetControllen(n)
}

// setName points msg's name at n.
func setName(msg *unix.Msghdr, n *sockName) {
	msg.Name = &n.b[0]
	msg.Namelen = n.n
}
