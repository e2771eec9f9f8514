package worker

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/worker/packet"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// BenchmarkEgressSend measures what one datagram costs to send, as the
// mmsg backend sends a batch of 64 datagrams of 1,000 bytes to one
// multicast destination, out of a tun interface no process reads (it
// drops what it is given, counted, so only the sending side is measured;
// it has no segmentation offload, so GSO runs are cut in software, as for
// a NIC without UDP segmentation offload): from a connected socket,
// as each worker's per-output sockets used to; from the unconnected,
// shared socket of an egress identity, each send naming its destination
// (and its TTL, for outputs with one); with UDP GSO (one send carrying the
// 64); and from the raw socket of a transparent output, with the headers
// the worker writes. The metric to compare is ns/datagram.
func BenchmarkEgressSend(b *testing.B) {
	netnstest.RequireRoot(b)
	ns := netnstest.New(b, "egb")
	ns.MustRun("ip", "tuntap", "add", "dev", "egb0", "mode", "tun")
	ns.SetupLink("egb0", "10.99.0.1/24")
	ifindex := ns.IfIndex("egb0")
	dst := netip.MustParseAddrPort("239.9.9.9:6000")

	const batch, size = 64, 1000 // 64,000 bytes: one UDP_SEGMENT send
	payload := make([]byte, batch*size)
	in := packettest.BuildUDP4(netip.MustParseAddrPort("10.1.0.9:4000"), netip.MustParseAddrPort("239.1.1.1:5000"), payload[:size])

	type variant struct {
		name      string
		open      func() (int, error)
		gso       bool // one UDP_SEGMENT send of the 64
		ttl       int
		raw       bool
		connected bool
	}
	openUDP := func() (int, error) { return relaysock.OpenEgress(relaysock.EgressKey{IfIndex: ifindex}) }
	openConnected := func() (int, error) {
		fd, err := openUDP()
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
		}
		return fd, err
	}
	openRaw := func() (int, error) { return relaysock.OpenRaw(ifindex, false) }
	for _, v := range []variant{
		{name: "connected", open: openConnected, connected: true},
		{name: "connected, GSO", open: openConnected, connected: true, gso: true},
		{name: "unconnected", open: openUDP},
		{name: "unconnected, TTL", open: openUDP, ttl: 8},
		{name: "unconnected, GSO", open: openUDP, gso: true},
		{name: "unconnected, GSO, TTL", open: openUDP, gso: true, ttl: 8},
		{name: "raw", open: openRaw, raw: true},
	} {
		b.Run(v.name, func(b *testing.B) {
			var fd int
			if err := ns.Do(func() (err error) { fd, err = v.open(); return err }); err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			var name sockName
			name.set(dst, ifindex)
			if v.raw {
				name.set(netip.AddrPortFrom(dst.Addr(), 0), ifindex)
			}
			d := &dest{key: destKey{dst: dst}, name: name, dstIP: dst.Addr().As16()}
			var dg packet.Datagram
			packet.Parse(in, &dg)
			var org origin
			org.read(in, &dg, false)

			msgs := make([]mmsghdr, batch)
			ctls := make([]sendCtl, batch)
			iovs := make([]unix.Iovec, 2*batch)
			hdrs := make([][maxHdr]byte, batch)
			prepare := func() int {
				if v.gso {
					h := &msgs[0].hdr
					*h = unix.Msghdr{Iov: &iovs[0]}
					for i := range batch {
						iovs[i].Base = &payload[i*size]
						iovs[i].SetLen(size)
					}
					h.SetIovlen(batch)
					if !v.connected {
						setName(h, &d.name)
					}
					ctls[0].attach(h, ctls[0].set(size, v.ttl, false))
					return 1
				}
				for i := range batch {
					h := &msgs[i].hdr
					*h = unix.Msghdr{Iov: &iovs[2*i]}
					k := 0
					if v.raw {
						n, _ := org.header(&hdrs[i], 0, d, 0, payload[i*size:(i+1)*size])
						iovs[2*i].Base = &hdrs[i][0]
						iovs[2*i].SetLen(n)
						k++
					}
					iovs[2*i+k].Base = &payload[i*size]
					iovs[2*i+k].SetLen(size)
					h.SetIovlen(k + 1)
					if !v.connected {
						setName(h, &d.name)
					}
					ctls[i].attach(h, ctls[i].set(0, v.ttl, false))
				}
				return batch
			}
			b.ReportAllocs()
			for b.Loop() {
				n := prepare()
				for m := 0; m < n; {
					r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[m])),
						uintptr(n-m), 0, 0, 0)
					if errno != 0 {
						b.Fatalf("sendmmsg: %v", errno)
					}
					m += int(r)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/datagram")
		})
	}
}
