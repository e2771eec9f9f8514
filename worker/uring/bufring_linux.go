package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19+): a
// group of buffers the kernel picks from for operations prepared with a
// buffer group, such as PrepRecvMultishot. The caller owns the buffers: it
// adds them with Add and Advance, the kernel hands one back per CQE
// (CQE.BufferID), and the caller adds it again once done with its data.
// Like the Ring, a BufRing belongs to the ring's owner goroutine.
type BufRing struct {
	ring *Ring
	mem  []byte    // page-aligned ring memory shared with the kernel
	bufs []ringBuf // view of mem
	mask uint16
	tail uint16 // last published tail
	bgid uint16
}

// RegisterBufRing registers a buffer ring of entries slots (a power of two,
// at most 32768) as buffer group bgid. The ring starts empty.
func (r *Ring) RegisterBufRing(entries uint16, bgid uint16) (*BufRing, error) {
	if entries == 0 || entries&(entries-1) != 0 || entries > maxEntries {
		return nil, fmt.Errorf("register buffer ring %d: %d entries is not a power of two up to %d",
			bgid, entries, maxEntries)
	}
	mem, err := Mmap(int(entries) * int(unsafe.Sizeof(ringBuf{})))
	if err != nil {
		return nil, fmt.Errorf("register buffer ring %d: %w", bgid, err)
	}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), ringEntries: uint32(entries), bgid: bgid}
	if err := sysRegister(r.fd, registerPbufRing, unsafe.Pointer(&reg), 1); err != nil {
		_ = Munmap(mem)
		if errors.Is(err, unix.EEXIST) {
			// Also the answer when bgid is already registered.
			return nil, fmt.Errorf("register buffer ring %d (group in use, or wrong thread): %w", bgid, err)
		}
		return nil, fmt.Errorf("register buffer ring %d: %w", bgid, err)
	}
	b := &BufRing{
		ring: r,
		mem:  mem,
		bufs: unsafe.Slice((*ringBuf)(unsafe.Pointer(&mem[0])), entries),
		mask: entries - 1,
		bgid: bgid,
	}
	r.bufRings = append(r.bufRings, b)
	return b, nil
}

// Add writes buffer bid (n bytes at addr, in memory from Mmap) into the
// slot offset places past the published tail. It is invisible to the
// kernel until Advance; add several, then Advance once by their number.
func (b *BufRing) Add(addr uintptr, n uint32, bid uint16, offset int) {
	e := &b.bufs[(b.tail+uint16(offset))&b.mask]
	e.addr = uint64(addr)
	e.len = n
	e.bid = bid
}

// Advance publishes count added buffers to the kernel.
func (b *BufRing) Advance(count int) {
	b.tail += uint16(count)
	// The tail is the u16 at byte 14 of entry 0 and Go has no 16-bit atomic
	// store: store entry 0's bid and the tail together as one u32 (release
	// order for the entries written before). The kernel never writes bid.
	e := &b.bufs[0]
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&e.bid)), uint32(e.bid)|uint32(b.tail)<<16)
}

// Close unregisters the buffer group and unmaps the ring. Operations using
// the group must have ended. A second call does nothing.
func (b *BufRing) Close() error {
	if b.mem == nil {
		return nil
	}
	var err error
	if r := b.ring; r.fd >= 0 {
		reg := bufReg{bgid: b.bgid}
		if e := sysRegister(r.fd, registerUnregisterPbuf, unsafe.Pointer(&reg), 1); e != nil {
			err = fmt.Errorf("unregister buffer ring %d: %w", b.bgid, e)
		}
		for i, o := range r.bufRings {
			if o == b {
				r.bufRings = append(r.bufRings[:i], r.bufRings[i+1:]...)
				break
			}
		}
	}
	b.unmap()
	return err
}

// unmap releases the ring memory; the ring must be unregistered or closed.
func (b *BufRing) unmap() {
	if b.mem != nil {
		_ = Munmap(b.mem)
		b.mem, b.bufs = nil, nil
	}
}
