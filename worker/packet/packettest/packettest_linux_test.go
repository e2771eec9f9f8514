package packettest_test

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/worker/packet/packettest"
	"golang.org/x/sys/unix"
)

// TestKernelAcceptsBuiltPackets injects built packets with AF_PACKET into one
// end of a veth pair and checks that the kernel's IP and UDP receive path at
// the other end delivers them to a UDP socket: proof that lengths and
// checksums are right. A copy with a corrupted UDP checksum, sent first, must
// be counted in InCsumErrors and not delivered, which shows the kernel did
// check.
func TestKernelAcceptsBuiltPackets(t *testing.T) {
	a := netnstest.New(t, "pta")
	b := netnstest.New(t, "ptb")
	netnstest.Veth(t, a, "va", []string{"10.78.0.1/24", "fd78::1/64"}, b, "vb", []string{"10.78.0.2/24", "fd78::2/64"})
	mac, err := net.ParseMAC(strings.TrimSpace(b.MustRun("cat", "/sys/class/net/vb/address")))
	if err != nil {
		t.Fatal(err)
	}
	ifindex := a.IfIndex("va")

	tests := []struct {
		name      string
		network   string
		listen    netip.AddrPort
		from      netip.AddrPort
		build     func(src, dst netip.AddrPort, payload []byte) []byte
		etherType uint16
		csumFile  string
		csumKey   string
	}{
		{"ipv4", "udp4", netip.MustParseAddrPort("10.78.0.2:4000"), netip.MustParseAddrPort("10.78.0.1:39000"),
			packettest.BuildUDP4, unix.ETH_P_IP, "/proc/net/snmp", "Udp:InCsumErrors"},
		{"ipv6", "udp6", netip.MustParseAddrPort("[fd78::2]:4000"), netip.MustParseAddrPort("[fd78::1]:39000"),
			packettest.BuildUDP6, unix.ETH_P_IPV6, "/proc/net/snmp6", "Udp6InCsumErrors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conn *net.UDPConn
			if err := b.Do(func() (err error) {
				conn, err = net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(tc.listen))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var fd int
			if err := a.Do(func() (err error) {
				fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				return err
			}); err != nil {
				t.Fatalf("AF_PACKET socket: %v", err)
			}
			defer unix.Close(fd)
			to := &unix.SockaddrLinklayer{Protocol: htons(tc.etherType), Ifindex: ifindex, Halen: 6}
			copy(to.Addr[:], mac)

			csumBefore := snmpCounter(t, b, tc.csumFile, tc.csumKey)
			bad := tc.build(tc.from, tc.listen, []byte("corrupt"))
			bad[len(bad)-1] ^= 0xff // payload changed after the checksum was computed
			good := tc.build(tc.from, tc.listen, bytes.Repeat([]byte("ok"), 600))
			for _, p := range [][]byte{bad, good} {
				if err := unix.Sendto(fd, p, 0, to); err != nil {
					t.Fatalf("inject: %v", err)
				}
			}
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 2048)
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			if !bytes.Equal(buf[:n], good[len(good)-1200:]) || from.Port() != tc.from.Port() {
				t.Fatalf("received %d bytes from %v, want the 1200-byte good payload from %v", n, from, tc.from)
			}
			if got := snmpCounter(t, b, tc.csumFile, tc.csumKey); got != csumBefore+1 {
				t.Errorf("%s went %d → %d, want +1 for the corrupted packet", tc.csumKey, csumBefore, got)
			}
		})
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// snmpCounter reads one counter from /proc/net/snmp ("Udp:InCsumErrors":
// a header line and a value line per protocol) or /proc/net/snmp6
// ("Udp6InCsumErrors": name and value per line) inside ns.
func snmpCounter(t *testing.T, ns *netnstest.NS, file, key string) uint64 {
	t.Helper()
	lines := strings.Split(ns.MustRun("cat", file), "\n")
	proto, name, twoLine := strings.Cut(key, ":")
	for i, line := range lines {
		f := strings.Fields(line)
		switch {
		case !twoLine && len(f) == 2 && f[0] == key:
			return parseUint(t, f[1])
		case twoLine && len(f) > 0 && f[0] == proto+":" && i+1 < len(lines):
			vals := strings.Fields(lines[i+1])
			for j, h := range f {
				if h == name && j < len(vals) {
					return parseUint(t, vals[j])
				}
			}
		}
	}
	t.Fatalf("%s not found in %s", key, file)
	return 0
}

func parseUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
