package mcrgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// openSender opens the UDP socket of a Sender: bound to cfg.Source if set,
// with the multicast interface, TTL and loopback set for a multicast group,
// bound to the interface for a unicast one.
//
// Multicast loopback is off: a local socket joined to the group would
// otherwise receive copies that never crossed a link, and mcrgen exists to
// measure what crossed one.
func openSender(cfg SendConfig) (io.Closer, batchWriter, net.Addr, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	local := netip.AddrPortFrom(cfg.Source, uint16(cfg.SourcePort))
	if !cfg.Source.IsValid() {
		local = netip.AddrPortFrom(unspecified(cfg.Group), uint16(cfg.SourcePort))
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if cfg.Group.IsMulticast() {
			return nil
		}
		return setsockopt(rc, "SO_BINDTODEVICE", func(fd int) error {
			return unix.BindToDevice(fd, cfg.Interface)
		})
	}}
	conn, err := lc.ListenPacket(context.Background(), udpNetwork(cfg.Group), zoned(local, cfg.Interface))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open sending socket: %w", err)
	}
	w, err := configureSender(conn, ifi, cfg)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	dst := &net.UDPAddr{IP: cfg.Group.AsSlice(), Port: cfg.Port, Zone: zone(cfg.Group, cfg.Interface)}
	return conn, w, dst, nil
}

// configureSender sets the per-family options of a sending socket.
func configureSender(conn net.PacketConn, ifi *net.Interface, cfg SendConfig) (batchWriter, error) {
	multicast := cfg.Group.IsMulticast()
	if cfg.Group.Is4() {
		pc := ipv4.NewPacketConn(conn)
		switch {
		case multicast:
			if err := pc.SetMulticastInterface(ifi); err != nil {
				return nil, fmt.Errorf("set multicast interface %s: %w", ifi.Name, err)
			}
			if err := pc.SetMulticastLoopback(false); err != nil {
				return nil, fmt.Errorf("disable multicast loopback: %w", err)
			}
			if cfg.TTL > 0 {
				if err := pc.SetMulticastTTL(cfg.TTL); err != nil {
					return nil, fmt.Errorf("set multicast TTL %d: %w", cfg.TTL, err)
				}
			}
		case cfg.TTL > 0:
			if err := pc.SetTTL(cfg.TTL); err != nil {
				return nil, fmt.Errorf("set TTL %d: %w", cfg.TTL, err)
			}
		}
		return pc, nil
	}
	pc := ipv6.NewPacketConn(conn)
	switch {
	case multicast:
		if err := pc.SetMulticastInterface(ifi); err != nil {
			return nil, fmt.Errorf("set multicast interface %s: %w", ifi.Name, err)
		}
		if err := pc.SetMulticastLoopback(false); err != nil {
			return nil, fmt.Errorf("disable multicast loopback: %w", err)
		}
		if cfg.TTL > 0 {
			if err := pc.SetMulticastHopLimit(cfg.TTL); err != nil {
				return nil, fmt.Errorf("set multicast hop limit %d: %w", cfg.TTL, err)
			}
		}
	case cfg.TTL > 0:
		if err := pc.SetHopLimit(cfg.TTL); err != nil {
			return nil, fmt.Errorf("set hop limit %d: %w", cfg.TTL, err)
		}
	}
	return pc, nil
}

// openReceiver opens the UDP socket of a Receiver: bound to the group and
// port and to the interface, with a large receive buffer, and joined to the
// group on the interface when it is multicast.
//
// Linux delivers a multicast datagram to every socket bound to its group
// and port whose owner joined the group on any socket (IP_MULTICAST_ALL,
// on by default; ip(7)); turning it off and binding to the device makes the
// socket see only what its own membership brings in on its interface.
// SO_REUSEADDR lets several receivers share a group and port, e.g. one per
// interface.
func openReceiver(cfg RecvConfig) (net.PacketConn, batchReader, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return receiverOptions(rc, cfg)
	}}
	local := netip.AddrPortFrom(cfg.Group, uint16(cfg.Port))
	conn, err := lc.ListenPacket(context.Background(), udpNetwork(cfg.Group), zoned(local, cfg.Interface))
	if err != nil {
		return nil, nil, fmt.Errorf("open receiving socket: %w", err)
	}
	r, err := join(conn, ifi, cfg)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, r, nil
}

// receiverOptions sets the options a receiving socket needs before bind.
func receiverOptions(rc syscall.RawConn, cfg RecvConfig) error {
	if err := setsockopt(rc, "SO_REUSEADDR", func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	if err := setsockopt(rc, "SO_RCVBUF", func(fd int) error {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, RecvBufferSize)
		if errors.Is(err, unix.EPERM) { // without CAP_NET_ADMIN: capped at rmem_max
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, RecvBufferSize)
		}
		return err
	}); err != nil {
		return err
	}
	if err := setsockopt(rc, "SO_BINDTODEVICE", func(fd int) error {
		return unix.BindToDevice(fd, cfg.Interface)
	}); err != nil {
		return err
	}
	if !cfg.Group.IsMulticast() {
		return nil
	}
	if cfg.Group.Is4() {
		return setsockopt(rc, "IP_MULTICAST_ALL", func(fd int) error {
			return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
		})
	}
	return setsockopt(rc, "IPV6_MULTICAST_ALL", func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
	})
}

// join joins a multicast group (source-specific with cfg.Source) and
// returns the batch reader of the socket.
func join(conn net.PacketConn, ifi *net.Interface, cfg RecvConfig) (batchReader, error) {
	group := &net.UDPAddr{IP: cfg.Group.AsSlice()}
	source := &net.UDPAddr{IP: cfg.Source.AsSlice()}
	var err error
	if cfg.Group.Is4() {
		pc := ipv4.NewPacketConn(conn)
		switch {
		case !cfg.Group.IsMulticast():
		case cfg.Source.IsValid():
			err = pc.JoinSourceSpecificGroup(ifi, group, source)
		default:
			err = pc.JoinGroup(ifi, group)
		}
		if err != nil {
			return nil, joinError(cfg, err)
		}
		return pc, nil
	}
	pc := ipv6.NewPacketConn(conn)
	switch {
	case !cfg.Group.IsMulticast():
	case cfg.Source.IsValid():
		err = pc.JoinSourceSpecificGroup(ifi, group, source)
	default:
		err = pc.JoinGroup(ifi, group)
	}
	if err != nil {
		return nil, joinError(cfg, err)
	}
	return pc, nil
}

func joinError(cfg RecvConfig, err error) error {
	if cfg.Source.IsValid() {
		return fmt.Errorf("join (%s, %s) on %s: %w", cfg.Source, cfg.Group, cfg.Interface, err)
	}
	return fmt.Errorf("join %s on %s: %w", cfg.Group, cfg.Interface, err)
}

// setsockopt runs set on the socket's fd and names the option in its error.
func setsockopt(rc syscall.RawConn, name string, set func(fd int) error) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = set(int(fd)) }); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	if serr != nil {
		return fmt.Errorf("set %s: %w", name, serr)
	}
	return nil
}

// preciseSleep returns a sleep with microsecond-scale precision for the
// calling goroutine, and the function that undoes what it needed.
//
// It locks the goroutine to its thread and lowers that thread's timer
// slack to 1 ns (prctl(2) PR_SET_TIMERSLACK; the default 50 µs would be
// added to every sleep), then sleeps with nanosleep(2), which blocks the
// thread rather than parking the goroutine on the runtime's timers. release
// restores the slack and unlocks the thread.
func preciseSleep() (sleep func(time.Duration), release func()) {
	runtime.LockOSThread()
	oldSlack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err == nil {
		err = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	}
	if err != nil {
		runtime.UnlockOSThread()
		return time.Sleep, func() {}
	}
	sleep = func(d time.Duration) {
		ts := unix.NsecToTimespec(int64(d))
		for unix.Nanosleep(&ts, &ts) == unix.EINTR {
		}
	}
	release = func() {
		unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(oldSlack), 0, 0, 0)
		runtime.UnlockOSThread()
	}
	return sleep, release
}

func udpNetwork(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

func unspecified(like netip.Addr) netip.Addr {
	if like.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// zoned formats an address and port for net's Listen functions, with the
// interface as zone where the address needs one (IPv6 link-local scope).
func zoned(ap netip.AddrPort, ifname string) string {
	host := ap.Addr().String()
	if z := zone(ap.Addr(), ifname); z != "" {
		host += "%" + z
	}
	return net.JoinHostPort(host, strconv.Itoa(int(ap.Port())))
}

// zone returns ifname for IPv6 addresses of link-local or interface-local
// scope, which mean nothing without one, and "" otherwise.
func zone(a netip.Addr, ifname string) string {
	if a.Is6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast()) {
		return ifname
	}
	return ""
}

// pinThread moves the calling thread, which the caller has locked, to
// cpu (sched_setaffinity(2) acts on one thread).
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// threadAffinity returns the calling thread's CPU set and a function that
// puts it back.
func threadAffinity() (restore func(), err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	return func() { _ = unix.SchedSetaffinity(0, &set) }, nil
}
