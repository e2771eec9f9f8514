package relaysock

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestOpenEgress opens egress sockets in a namespace with two interfaces
// and checks the identities they get and the binds the kernel refuses,
// which ruleset.SourcePorts must predict.
func TestOpenEgress(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "regress")
	peer := netnstest.New(t, "regressp")
	netnstest.Veth(t, ns, "e1", []string{"10.7.1.1/24", "10.7.1.5/24", "fd07:1::1/64"}, peer, "p1", nil)
	netnstest.Veth(t, ns, "e2", []string{"10.7.2.1/24"}, peer, "p2", nil)
	e1, e2 := ns.IfIndex("e1"), ns.IfIndex("e2")
	a := netip.MustParseAddr

	mustNoErr(t, ns.Do(func() error {
		var held []int
		t.Cleanup(func() {
			for _, fd := range held {
				unix.Close(fd)
			}
		})
		open := func(k EgressKey) (int, error) {
			fd, err := OpenEgress(k)
			if err == nil {
				held = append(held, fd)
			}
			return fd, err
		}
		port := BoundPort

		eph1, err := open(EgressKey{IfIndex: e1})
		mustNoErr(t, err)
		eph2, err := open(EgressKey{IfIndex: e1})
		mustNoErr(t, err)
		if p1, p2 := port(eph1), port(eph2); p1 == 0 || p1 == p2 {
			t.Errorf("two ephemeral identities on e1 got ports %d and %d, want two ports", p1, p2)
		}

		steps := []struct {
			name    string
			key     EgressKey
			wantErr string
		}{
			{"fixed port on e1", EgressKey{IfIndex: e1, Port: 5001}, ""},
			{"the same port on e2", EgressKey{IfIndex: e2, Port: 5001}, ""},
			{"the same port on e1 for IPv6", EgressKey{IfIndex: e1, V6: true, Port: 5001}, ""},
			{"the same port and interface again", EgressKey{IfIndex: e1, Port: 5001},
				"bind to source port 5001: address already in use"},
			{"the same port from one address", EgressKey{IfIndex: e1, Src: a("10.7.1.1"), Port: 5001},
				"bind to source 10.7.1.1:5001: address already in use"},
			{"another port from two addresses", EgressKey{IfIndex: e1, Src: a("10.7.1.1"), Port: 5002}, ""},
			{"", EgressKey{IfIndex: e1, Src: a("10.7.1.5"), Port: 5002}, ""},
			{"a source the host lacks", EgressKey{IfIndex: e1, Src: a("10.99.99.99")},
				"bind to source 10.99.99.99: cannot assign requested address"},
			{"a source of the other family", EgressKey{IfIndex: e1, Src: a("fd07:1::1")},
				"source fd07:1::1 is not IPv4"},
			{"an interface that is gone", EgressKey{IfIndex: 999}, "set multicast interface: cannot assign requested address"},
		}
		for _, st := range steps {
			_, err := open(st.key)
			switch {
			case st.wantErr == "" && err != nil:
				t.Errorf("%s: OpenEgress(%v): %v", st.name, st.key, err)
			case st.wantErr != "" && (err == nil || err.Error() != st.wantErr):
				t.Errorf("%s: OpenEgress(%v): %v, want %q", st.name, st.key, err, st.wantErr)
			}
		}

		// A datagram to the port of an egress socket is not queued.
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		mustNoErr(t, err)
		defer unix.Close(s)
		mustNoErr(t, unix.Sendto(s, []byte("x"), 0, &unix.SockaddrInet4{Addr: [4]byte{10, 7, 1, 1}, Port: port(eph1)}))
		buf := make([]byte, 16)
		if _, _, err := unix.Recvfrom(eph1, buf, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
			t.Errorf("receive on an egress socket: %v, want EAGAIN (it receives nothing)", err)
		}
		return nil
	}))
}

// TestOpenRaw opens the raw sockets of transparent outputs of both
// families.
func TestOpenRaw(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "rraw")
	lo := ns.IfIndex("lo")
	mustNoErr(t, ns.Do(func() error {
		for _, v6 := range []bool{false, true} {
			if err := ProbeRaw(v6); err != nil {
				t.Errorf("ProbeRaw(v6=%v): %v", v6, err)
			}
			fd, err := OpenEgress(EgressKey{IfIndex: lo, V6: v6, Raw: true})
			if err != nil {
				t.Errorf("open raw socket (v6=%v): %v", v6, err)
				continue
			}
			typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
			dev, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
			if typ != unix.SOCK_RAW || dev != lo {
				t.Errorf("raw socket (v6=%v): type %d on ifindex %d, want SOCK_RAW on %d", v6, typ, dev, lo)
			}
			unix.Close(fd)
		}
		return nil
	}))
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
