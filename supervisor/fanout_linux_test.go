package supervisor

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/netnstest"
)

func TestProbeFanoutID(t *testing.T) {
	a, b := netnstest.New(t, "fa"), netnstest.New(t, "fb")
	netnstest.Veth(t, a, "mcra0", nil, b, "mcrb0", nil)
	ifindex := a.IfIndex("mcra0")
	const id = 4321
	probe := func() bool {
		t.Helper()
		var free bool
		if err := a.Do(func() (err error) { free, err = probeFanoutID(id); return err }); err != nil {
			t.Fatal(err)
		}
		return free
	}
	if !probe() {
		t.Fatalf("fanout id %d in use in a fresh namespace", id)
	}
	// A worker-style member: FANOUT_CPU on a bound ETH_P_ALL socket.
	var member int
	var proto [2]byte
	binary.BigEndian.PutUint16(proto[:], unix.ETH_P_ALL)
	all := binary.NativeEndian.Uint16(proto[:])
	err := a.Do(func() (err error) {
		member, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(all))
		if err != nil {
			return err
		}
		if err := unix.Bind(member, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifindex}); err != nil {
			return err
		}
		return unix.SetsockoptInt(member, unix.SOL_PACKET, unix.PACKET_FANOUT, id|unix.PACKET_FANOUT_CPU<<16)
	})
	if err != nil {
		t.Fatalf("join fanout group %d: %v", id, err)
	}
	if probe() {
		t.Errorf("fanout id %d reported free while a worker-style socket is in its group", id)
	}
	unix.Close(member)
	if !probe() {
		t.Errorf("fanout id %d still in use after its only member closed", id)
	}
	// The probe's own group does not outlive it.
	if !probe() {
		t.Errorf("fanout id %d in use after a probe", id)
	}
}
