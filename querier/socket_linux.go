package querier

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// membershipFilter is the classic BPF program of the receive socket: IPv4
// protocol 2 (IGMP), and ICMPv6 types 130, 131, 132 and 143 (MLD) right
// after the IPv6 header or after one hop-by-hop header, where hosts put the
// Router Alert. On a SOCK_DGRAM packet socket the program's loads count
// from the network header (packet(7)); the EtherType comes from the
// SKF_AD_PROTOCOL extension, so links without an Ethernet header (tun)
// work too. Everything else stays in the kernel.
func membershipFilter() ([]bpf.RawInstruction, error) {
	const (
		accept = 0x40000 // snap length: whole packets
		v4     = 3
		v6     = 5
	)
	return bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipTrue: v4 - 2},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipTrue: v6 - 3, SkipFalse: 21 - 3},
		/* 3 */ bpf.LoadAbsolute{Off: 9, Size: 1}, // v4: protocol
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoIGMP, SkipTrue: 20 - 5, SkipFalse: 21 - 5},
		/* 5 */ bpf.LoadAbsolute{Off: 6, Size: 1}, // v6: next header
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipTrue: 15 - 7},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoHopByHop, SkipFalse: 21 - 8},
		/* 8 */ bpf.LoadAbsolute{Off: ipv6Header, Size: 1}, // after hop-by-hop
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipFalse: 21 - 10},
		/* 10 */ bpf.LoadAbsolute{Off: ipv6Header + 1, Size: 1}, // its length in 8 bytes, less 1
		/* 11 */ bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1 + ipv6Header/8},
		/* 12 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 3},
		/* 13 */ bpf.TAX{},
		/* 14 */ bpf.Jump{Skip: 16 - 15},
		/* 15 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ipv6Header},
		/* 16 */ bpf.LoadIndirect{Off: 0, Size: 1}, // ICMPv6 type
		/* 17 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: mldV2Report, SkipTrue: 20 - 18},
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: mldQuery, SkipTrue: 21 - 19},
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: mldV1Done, SkipTrue: 21 - 20},
		/* 20 */ bpf.RetConstant{Val: accept},
		/* 21 */ bpf.RetConstant{Val: 0},
	})
}

// dropAll is a filter that accepts nothing: the send sockets are raw
// sockets, which would otherwise queue a copy of IGMP or ICMPv6 packets
// nobody reads.
var dropAll = []bpf.RawInstruction{{Op: unix.BPF_RET | unix.BPF_K, K: 0}}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	f := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sockOpt is one step of setting up a socket, named for the error.
type sockOpt struct {
	what string
	do   func() error
}

// configure runs steps on the socket fd, a kind of socket named for the
// error, and closes fd when one fails.
func configure(fd int, kind string, steps []sockOpt) error {
	for _, s := range steps {
		if err := s.do(); err != nil {
			unix.Close(fd)
			return fmt.Errorf("%s on %s: %w", s.what, kind, err)
		}
	}
	return nil
}

// openReceiver opens the AF_PACKET socket that hears every IGMP and MLD
// message on the interface, whoever it is for.
//
// Why AF_PACKET: a raw IGMP socket gets only what the IP layer delivers
// locally, and without kernel multicast routing (CONFIG_IP_MROUTE and an
// mrouted socket) ip_check_mc_rcu delivers IGMP only for groups the host
// itself joined: not IGMPv2 reports for others' groups, not IGMPv3 reports
// to 224.0.0.22. MLD reports to ff02::16 likewise reach no raw ICMPv6
// socket unless the host joined ff02::16. A packet socket taps the link
// below all of that.
//
// Why ALLMULTI: a NIC filters multicast by MAC address in hardware and
// passes only groups the host joined; reports go to the reported group
// (IGMPv2, MLDv1) or to 224.0.0.22/ff02::16, which hosts do not join. A
// PACKET_MR_ALLMULTI membership opens the filter while the socket lives
// (the kernel counts such memberships and drops them on close). veth and
// bridge devices have no such filter, so the namespace tests cannot show
// the difference; real NICs need it.
//
// The socket is created with protocol 0, so that it receives nothing until
// the filter is attached and it is bound to ETH_P_ALL on the interface:
// no packet slips in unfiltered. PACKET_IGNORE_OUTGOING (Linux 4.20) keeps
// our own queries, and the host's own reports, out.
func openReceiver(ifindex int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	prog, err := membershipFilter()
	if err == nil {
		err = attachFilter(fd, prog)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach IGMP/MLD filter: %w", err)
	}
	steps := []sockOpt{
		{"set PACKET_IGNORE_OUTGOING", func() error {
			return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		}},
		{"bind", func() error {
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
		}},
		{"add PACKET_MR_ALLMULTI membership", func() error {
			return unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP,
				&unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_ALLMULTI})
		}},
	}
	if err := configure(fd, "packet socket", steps); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("igmp-mld-packet:%d", ifindex)), nil
}

// sender4 sends IGMP queries: a raw IPPROTO_IGMP socket, whose IP header
// the kernel builds with TTL 1, TOS 0xc0 (Internetwork Control) and the
// Router Alert option (RFC 3376 §4: every IGMP message carries them). The
// source address and interface come with each packet (IP_PKTINFO:
// ipi_spec_dst is the source of a raw socket's packet, ip(7)).
type sender4 struct {
	fd      int
	ifindex int
	buf     []byte
}

func openSender4(ifindex int) (*sender4, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_IGMP)
	if err != nil {
		return nil, fmt.Errorf("open raw IGMP socket: %w", err)
	}
	steps := []sockOpt{
		{"attach drop-all filter", func() error { return attachFilter(fd, dropAll) }},
		{"set IP_MULTICAST_IF", func() error {
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
		}},
		{"set IP_MULTICAST_TTL", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1) }},
		{"set IP_TTL", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, 1) }},
		{"set IP_MULTICAST_LOOP", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0) }},
		{"set IP_TOS", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, 0xc0) }},
		{"set IP_OPTIONS router alert", func() error {
			return unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, string([]byte{ipv4RouterAlert, 4, 0, 0}))
		}},
	}
	if err := configure(fd, "raw IGMP socket", steps); err != nil {
		return nil, err
	}
	return &sender4{fd: fd, ifindex: ifindex}, nil
}

func (s *sender4) SendQuery(m *Message, src, dst netip.Addr) error {
	var err error
	if s.buf, err = AppendIGMP(s.buf[:0], m); err != nil {
		return fmt.Errorf("encode IGMP query: %w", err)
	}
	cm := ipv4.ControlMessage{Src: net.IP(src.AsSlice()), IfIndex: s.ifindex}
	if _, err := unix.SendmsgN(s.fd, s.buf, cm.Marshal(), &unix.SockaddrInet4{Addr: dst.As4()}, unix.MSG_DONTWAIT); err != nil {
		return fmt.Errorf("send IGMP query from %v to %v: %w", src, dst, err)
	}
	return nil
}

// sender6 sends MLD queries: a raw ICMPv6 socket with hop limit 1 and a
// sticky hop-by-hop header holding the Router Alert option for MLD (RFC
// 2711, value 0; RFC 3810 §5), source and interface per packet
// (IPV6_PKTINFO). The kernel computes the ICMPv6 checksum (raw(7)).
type sender6 struct {
	fd      int
	ifindex int
	buf     []byte
}

func openSender6(ifindex int) (*sender6, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return nil, fmt.Errorf("open raw ICMPv6 socket: %w", err)
	}
	var block unix.ICMPv6Filter
	for i := range block.Data {
		block.Data[i] = 0xffffffff // ICMP6_FILTER: a set bit blocks the type
	}
	// Next header (filled in by the kernel), length 0 (8 bytes), Router
	// Alert (type 5, length 2, value 0: MLD), PadN of 0 bytes.
	hopOpts := string([]byte{0, 0, ipv6RouterAlert, 2, 0, 0, 1, 0})
	steps := []sockOpt{
		{"set ICMP6_FILTER", func() error { return unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &block) }},
		{"set IPV6_MULTICAST_IF", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex) }},
		{"set IPV6_MULTICAST_HOPS", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 1) }},
		{"set IPV6_UNICAST_HOPS", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 1) }},
		{"set IPV6_MULTICAST_LOOP", func() error { return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0) }},
		{"set IPV6_HOPOPTS router alert", func() error {
			return unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_HOPOPTS, hopOpts)
		}},
	}
	if err := configure(fd, "raw ICMPv6 socket", steps); err != nil {
		return nil, err
	}
	return &sender6{fd: fd, ifindex: ifindex}, nil
}

func (s *sender6) SendQuery(m *Message, src, dst netip.Addr) error {
	var err error
	if s.buf, err = AppendMLD(s.buf[:0], m, src, dst); err != nil {
		return fmt.Errorf("encode MLD query: %w", err)
	}
	cm := ipv6.ControlMessage{Src: net.IP(src.AsSlice()), IfIndex: s.ifindex}
	to := &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: uint32(s.ifindex)}
	if _, err := unix.SendmsgN(s.fd, s.buf, cm.Marshal(), to, unix.MSG_DONTWAIT); err != nil {
		return fmt.Errorf("send MLD query from %v to %v: %w", src, dst, err)
	}
	return nil
}
