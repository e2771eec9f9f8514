package supervisor

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// fanoutProbe reports whether PACKET_FANOUT group id is free in the
// daemon's network namespace (fanout_linux.go).
type fanoutProbe func(id int) (free bool, err error)

// fanoutIDs hands out the PACKET_FANOUT group id of each input interface:
// every worker's AF_PACKET socket on that interface joins the group, so it
// must be the same for all of them, free in the namespace when first used
// (another program's group, or another mcrd's, with the same id would make
// the workers' joins fail), and never 0. Ids are remembered per ifindex; a
// recreated interface (new ifindex) gets a new one.
//
// It is not safe for concurrent use; the master serialises it.
type fanoutIDs struct {
	probe fanoutProbe
	seed  uint64 // the daemon's pid: two daemons start their search apart
	byIf  map[int]int
	taken map[int]bool // ids handed out, free in the kernel until workers join
}

func newFanoutIDs(probe fanoutProbe, pid int) *fanoutIDs {
	return &fanoutIDs{probe: probe, seed: uint64(pid), byIf: map[int]int{}, taken: map[int]bool{}}
}

// maxFanoutID is the largest group id: the id is the low 16 bits of the
// PACKET_FANOUT argument (packet(7)).
const maxFanoutID = 1<<16 - 1

// get returns the group id of ifindex, choosing one on first use: starting
// from a hash of the daemon's pid and ifindex, the first id the probe finds
// free and that no other interface of this daemon holds.
func (f *fanoutIDs) get(ifindex int) (int, error) {
	if id, ok := f.byIf[ifindex]; ok {
		return id, nil
	}
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], f.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(ifindex))
	id := int(xxhash.Sum64(key[:]) % maxFanoutID) // 0..65534
	for range maxFanoutID {
		id = id%maxFanoutID + 1 // 1..65535, wrapping past 0
		if f.taken[id] {
			continue
		}
		free, err := f.probe(id)
		if err != nil {
			return 0, fmt.Errorf("probe fanout group %d: %w", id, err)
		}
		if free {
			f.byIf[ifindex] = id
			f.taken[id] = true
			return id, nil
		}
	}
	return 0, fmt.Errorf("choose a fanout group id for ifindex %d: all %d ids are in use", ifindex, maxFanoutID)
}

// release forgets the id of an interface that is gone.
func (f *fanoutIDs) release(ifindex int) {
	if id, ok := f.byIf[ifindex]; ok {
		delete(f.taken, id)
		delete(f.byIf, ifindex)
	}
}
