package netnstest

import (
	"net"
	"testing"
	"time"
)

func TestVethBetweenNamespaces(t *testing.T) {
	a := New(t, "nta")
	b := New(t, "ntb")
	Veth(t, a, "va", []string{"10.77.0.1/24", "fd77::1/64"}, b, "vb", []string{"10.77.0.2/24", "fd77::2/64"})
	// A socket made inside a namespace stays there after Do returns.
	var conn *net.UDPConn
	if err := b.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2), Port: 4000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := a.Do(func() error {
		c, err := net.Dial("udp4", "10.77.0.2:4000")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, _, err := conn.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("datagram over veth: got %q, %v", buf[:n], err)
	}
	// Do switches only the locked thread: inside, the veth end is visible;
	// outside it is not.
	var inside bool
	if err := a.Do(func() error {
		_, err := net.InterfaceByName("va")
		inside = err == nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Fatal("va not visible inside its namespace")
	}
	if _, err := net.InterfaceByName("va"); err == nil {
		t.Fatal("va leaked into the test's own namespace")
	}
	if a.IfIndex("va") <= 0 {
		t.Fatal("bad ifindex")
	}
}
