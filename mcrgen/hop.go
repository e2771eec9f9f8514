package mcrgen

import "fmt"

// DefaultHopEvery is how many datagrams a hopping sender sends on one CPU
// before it moves to the next.
const DefaultHopEvery = 50

// hopper moves a Sender's thread between CPUs: every datagrams on each of
// cpus in turn. It is how a test makes a stream arrive on several CPUs
// (veth and tun hand a datagram to the receiving side on the CPU that sent
// it), as the scheduler does now and then to any sender.
type hopper struct {
	cpus  []int
	every uint64
	cur   int // the CPU the thread is on; -1 before the first move
	// pin moves the calling thread to one CPU (sched_setaffinity on
	// Linux); tests replace it.
	pin func(cpu int) error
}

func newHopper(cpus []int, every int) *hopper {
	if every <= 0 {
		every = DefaultHopEvery
	}
	return &hopper{cpus: cpus, every: uint64(every), cur: -1, pin: pinThread}
}

// batch returns how many of n datagrams, starting at number sent, go out
// before the next move: a batch never spans two CPUs.
func (h *hopper) batch(sent uint64, n int) int {
	return int(min(uint64(n), h.every-sent%h.every))
}

// place moves the thread to the CPU datagram number sent leaves on.
func (h *hopper) place(sent uint64) error {
	cpu := h.cpus[int(sent/h.every%uint64(len(h.cpus)))]
	if cpu == h.cur {
		return nil
	}
	if err := h.pin(cpu); err != nil {
		return fmt.Errorf("move the sender to CPU %d: %w", cpu, err)
	}
	h.cur = cpu
	return nil
}
