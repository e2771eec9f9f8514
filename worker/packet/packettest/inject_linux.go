package packettest

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Inject sends IP packets (as BuildUDP4 and BuildUDP6 return them) out of
// ifname in the calling thread's network namespace, each to the Ethernet
// multicast address of its destination; the kernel adds the Ethernet
// header (AF_PACKET SOCK_DGRAM). The peer's kernel sees them as a NIC's
// packets: with the checksums they carry, none verified or left partial.
func Inject(ifname string, pkts ...[]byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	for _, p := range pkts {
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(etherTypeOf(p))}
		mac := multicastMAC(p)
		copy(sa.Addr[:], mac[:])
		if err := unix.Sendto(fd, p, 0, sa); err != nil {
			return fmt.Errorf("inject %d-byte packet on %s: %w", len(p), ifname, err)
		}
	}
	return nil
}

// InjectFrames sends whole Ethernet frames (as EthernetFrame returns
// them) out of ifname in the calling thread's network namespace
// (AF_PACKET SOCK_RAW).
func InjectFrames(ifname string, frames ...[]byte) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	for _, f := range frames {
		if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("inject %d-byte frame on %s: %w", len(f), ifname, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
