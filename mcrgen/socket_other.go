//go:build !linux

package mcrgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// errNotLinux reports that mcrgen's sockets need Linux: binding to a
// device, IP_MULTICAST_ALL and sendmmsg/recvmmsg batches.
var errNotLinux = fmt.Errorf("mcrgen sockets need Linux: %w", errors.ErrUnsupported)

func openSender(SendConfig) (io.Closer, batchWriter, net.Addr, error) {
	return nil, nil, nil, errNotLinux
}

func openReceiver(RecvConfig) (net.PacketConn, batchReader, error) {
	return nil, nil, errNotLinux
}

func preciseSleep() (func(time.Duration), func()) { return time.Sleep, func() {} }

func pinThread(int) error { return errNotLinux }

func threadAffinity() (func(), error) { return nil, errNotLinux }
