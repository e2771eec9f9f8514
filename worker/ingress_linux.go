package worker

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/worker/filter"
)

// buildFilter assembles the prefilter of an input; a set too large for an
// exact program gets a coarser one that still accepts everything wanted.
func buildFilter(ifindex int, matches []inputMatch) ([]bpf.RawInstruction, error) {
	fm := make([]filter.Match, len(matches))
	for i, m := range matches {
		fm[i] = filter.Match{Dst: m.Dst, Port: m.Port}
	}
	p, err := filter.Build(fm)
	if err != nil {
		return nil, fmt.Errorf("build filter for ifindex %d: %w", ifindex, err)
	}
	return p.Instructions, nil
}

// packetDrops returns the packets the kernel dropped on an AF_PACKET socket
// since the last call: reading PACKET_STATISTICS resets the counters
// (packet(7)), so the caller accumulates.
func packetDrops(fd int) uint64 {
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return uint64(st.Drops)
}
