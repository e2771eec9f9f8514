package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// probeFanoutID is the fanoutProbe of the real daemon. It joins group id
// with PACKET_FANOUT_HASH on a throwaway AF_PACKET socket and closes it.
// The kernel (fanout_add, net/packet/af_packet.c) keeps one list of groups
// per network namespace, whatever device they are bound to; joining an
// existing group fails with EINVAL unless type, protocol and device all
// match, and mcr's workers use FANOUT_CPU on a specific device. So the
// join succeeds only on a free id, creating a group that vanishes with the
// socket. The socket is left unbound (it listens on all devices): a socket
// bound to a device that is down is not "running", and the kernel would
// refuse every join with EINVAL, free id or not.
func probeFanoutID(id int) (bool, error) {
	var proto [2]byte // packet(7): the protocol in network byte order
	binary.BigEndian.PutUint16(proto[:], unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(binary.NativeEndian.Uint16(proto[:])))
	if err != nil {
		return false, fmt.Errorf("open AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, id|unix.PACKET_FANOUT_HASH<<16)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EINVAL):
		return false, nil
	default:
		return false, fmt.Errorf("join fanout group %d: %w", id, err)
	}
}
