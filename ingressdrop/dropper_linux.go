package ingressdrop

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Dropper keeps, per input interface, a tcx ingress program that drops the
// datagrams of a set of Matches. It is safe for concurrent use.
//
// The programs stay attached as long as the Dropper's file descriptors are
// open: Close detaches them all, and so does the end of the process,
// however it ends (see the package doc).
type Dropper struct {
	mu sync.Mutex
	// ifaces holds the attached interfaces by ifindex, guarded by mu.
	ifaces map[int]*iface
	// unsupported is set once an attach found no tcx, guarded by mu: the
	// kernel will not grow it, so later Sets fail at once.
	unsupported error
	closed      bool // guarded by mu
}

// iface is one interface's program, its maps and the link that attaches it.
type iface struct {
	rules    *ebpf.Map // key → __u8 1
	capacity int       // rules' MaxEntries
	have     map[key]struct{}
	drops    *ebpf.Map // per-CPU __u64: datagrams dropped
	prog     *ebpf.Program
	link     link.Link
}

// New returns a Dropper with nothing attached.
func New() *Dropper {
	return &Dropper{ifaces: map[int]*iface{}}
}

// Set makes the program on the interface with ifindex drop exactly the
// datagrams of matches, in the network namespace of the calling thread.
// The first non-empty set attaches a program; an empty one detaches it.
// Changes are incremental: new matches are added before old ones are
// removed, so a match in both the old and the new set is never let
// through, and nothing else is ever dropped. A set that does not fit the
// current map beside the old one gets a new map and program, which replace the old ones on
// the same link in one step.
//
// Errors: an invalid Match; ErrUnsupported (wrapped, naming the kernel
// requirement) when the kernel has no tcx; the kernel's errno otherwise
// (EPERM without CAP_BPF and CAP_NET_ADMIN, ENODEV for an ifindex that
// does not exist). A failed attach leaves nothing attached; a failed
// update leaves the old matches in place, with some of the new ones
// already added, and the next Set finishes the job.
func (d *Dropper) Set(ifindex int, matches []Match) error {
	want, err := keys(matches)
	if err != nil {
		return fmt.Errorf("set exclusive input on ifindex %d: %w", ifindex, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	ifc := d.ifaces[ifindex]
	switch {
	case len(want) == 0:
		if ifc != nil {
			delete(d.ifaces, ifindex)
			return ifc.close()
		}
		return nil
	case ifc == nil:
		if d.unsupported != nil {
			return fmt.Errorf("attach exclusive input to ifindex %d: %w", ifindex, d.unsupported)
		}
		attached, err := attach(ifindex, want)
		if errors.Is(err, ErrUnsupported) {
			d.unsupported = err
		}
		if errors.Is(err, unix.EPERM) {
			// cilium/ebpf suggests RLIMIT_MEMLOCK for any EPERM, but
			// kernels with tcx charge BPF memory to the cgroup (Linux
			// 5.11), so it is the capabilities, or a seccomp filter.
			err = fmt.Errorf("needs CAP_BPF, CAP_NET_ADMIN and the bpf system call: %w", err)
		}
		if err != nil {
			return fmt.Errorf("attach exclusive input to ifindex %d: %w", ifindex, err)
		}
		d.ifaces[ifindex] = attached
		return nil
	case !ifc.fits(want):
		return ifc.grow(ifindex, want)
	}
	return ifc.update(ifindex, want)
}

// Dropped returns how many datagrams the program on ifindex has dropped
// since it was attached, and false when none is attached.
func (d *Dropper) Dropped(ifindex int) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ifc := d.ifaces[ifindex]
	if ifc == nil {
		return 0, false
	}
	var perCPU []uint64
	if err := ifc.drops.Lookup(uint32(0), &perCPU); err != nil {
		return 0, true
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, true
}

// Close detaches every program and frees its maps. Later Sets return
// ErrClosed.
func (d *Dropper) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var errs []error
	for ifindex, ifc := range d.ifaces {
		errs = append(errs, ifc.close())
		delete(d.ifaces, ifindex)
	}
	return errors.Join(errs...)
}

// attach creates the maps and the program for want and attaches it to
// ifindex at tcx ingress.
func attach(ifindex int, want map[key]struct{}) (_ *iface, err error) {
	ifc := &iface{}
	defer func() {
		if err != nil {
			ifc.close()
		}
	}()
	ifc.drops, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "mcr_excl_drops", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("create drop counter map: %w", err)
	}
	if ifc.rules, err = newRules(want); err != nil {
		return nil, err
	}
	ifc.capacity = int(ifc.rules.MaxEntries())
	ifc.have = want
	if ifc.prog, err = newProgram(ifc.rules, ifc.drops); err != nil {
		return nil, err
	}
	ifc.link, err = link.AttachTCX(link.TCXOptions{
		Interface: ifindex, Program: ifc.prog, Attach: ebpf.AttachTCXIngress,
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	if err != nil {
		return nil, err
	}
	return ifc, nil
}

// newRules creates a rules map with room for want and fills it.
func newRules(want map[key]struct{}) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "mcr_excl_rules", Type: ebpf.Hash, KeySize: keySize, ValueSize: 1,
		MaxEntries: uint32(capacityFor(len(want))),
	})
	if err != nil {
		return nil, fmt.Errorf("create rules map: %w", err)
	}
	for k := range want {
		if err := m.Put(k, uint8(1)); err != nil {
			m.Close()
			return nil, fmt.Errorf("fill rules map: %w", err)
		}
	}
	return m, nil
}

// fits reports whether update can move the map to want: it adds before it
// deletes, so the old keys and the new must fit together.
func (ifc *iface) fits(want map[key]struct{}) bool {
	n := len(ifc.have)
	for k := range want {
		if _, ok := ifc.have[k]; !ok {
			n++
		}
	}
	return n <= ifc.capacity
}

// update adds the keys of want the map lacks, then deletes those it no
// longer wants. The map must have room for both (fits).
func (ifc *iface) update(ifindex int, want map[key]struct{}) error {
	for k := range want {
		if _, ok := ifc.have[k]; ok {
			continue
		}
		if err := ifc.rules.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("update exclusive input on ifindex %d: add key: %w", ifindex, err)
		}
		ifc.have[k] = struct{}{}
	}
	for k := range ifc.have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := ifc.rules.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("update exclusive input on ifindex %d: delete key: %w", ifindex, err)
		}
		delete(ifc.have, k)
	}
	return nil
}

// grow replaces the rules map with one sized for want (larger, or as
// large when old and new keys would not fit together), and the program
// with one using it; link.Update swaps the program on the link in
// one step (BPF_LINK_UPDATE), so no packet sees neither. The drop counter
// carries over.
func (ifc *iface) grow(ifindex int, want map[key]struct{}) error {
	rules, err := newRules(want)
	if err != nil {
		return fmt.Errorf("grow exclusive input on ifindex %d: %w", ifindex, err)
	}
	prog, err := newProgram(rules, ifc.drops)
	if err == nil {
		err = ifc.link.Update(prog)
		if err != nil {
			prog.Close()
		}
	}
	if err != nil {
		rules.Close()
		return fmt.Errorf("grow exclusive input on ifindex %d: %w", ifindex, err)
	}
	ifc.prog.Close()
	ifc.rules.Close()
	ifc.prog, ifc.rules = prog, rules
	ifc.capacity = int(rules.MaxEntries())
	ifc.have = want
	return nil
}

// close detaches the program (closing the link's fd is what detaches it:
// the kernel releases a tcx link with its last reference) and frees the
// maps; the program goes with its last reference, the link's.
func (ifc *iface) close() error {
	var errs []error
	if ifc.link != nil {
		errs = append(errs, ifc.link.Close())
	}
	// Close on a nil *ebpf.Program or *ebpf.Map does nothing.
	return errors.Join(append(errs, ifc.prog.Close(), ifc.rules.Close(), ifc.drops.Close())...)
}
