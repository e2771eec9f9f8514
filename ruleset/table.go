package ruleset

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
)

// Key identifies a received datagram for the lookup table: input ifindex,
// destination address and port, source address. Addresses are 16 bytes,
// IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d); an all-zero Src means "any
// source" in a table key. Fill one per packet with SetIPv4 or SetIPv6.
type Key struct {
	IfIndex int32
	Port    uint16
	Dst     [16]byte
	Src     [16]byte
}

// v4InV6Prefix is the first 12 bytes of an IPv4-mapped IPv6 address.
var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// SetIPv4 sets Dst and Src to IPv4 addresses, mapped into IPv6 form.
func (k *Key) SetIPv4(dst, src [4]byte) {
	copy(k.Dst[:12], v4InV6Prefix[:])
	copy(k.Dst[12:], dst[:])
	copy(k.Src[:12], v4InV6Prefix[:])
	copy(k.Src[12:], src[:])
}

// SetIPv6 sets Dst and Src to IPv6 addresses.
func (k *Key) SetIPv6(dst, src [16]byte) {
	k.Dst = dst
	k.Src = src
}

// String prints the key for logs and errors: "239.1.1.1:5000 from 10.0.0.9
// on ifindex 3", "from any" when Src is zero.
func (k Key) String() string {
	src := "any"
	if k.Src != ([16]byte{}) {
		src = netip.AddrFrom16(k.Src).Unmap().String()
	}
	dst := netip.AddrPortFrom(netip.AddrFrom16(k.Dst).Unmap(), k.Port)
	return fmt.Sprintf("%s from %s on ifindex %d", dst, src, k.IfIndex)
}

// KeyFor returns the table key of a rule input received on ifindex. in
// should be normalised and valid; KeyFor reports what it cannot encode.
func KeyFor(ifindex int, in Input) (Key, error) {
	if ifindex < 1 || ifindex > math.MaxInt32 {
		return Key{}, fmt.Errorf("key for input on %s: ifindex %d out of range", in.Interface, ifindex)
	}
	if in.Port < 1 || in.Port > 65535 {
		return Key{}, fmt.Errorf("key for input on %s: port %d out of range", in.Interface, in.Port)
	}
	k := Key{IfIndex: int32(ifindex), Port: uint16(in.Port)}
	dst, err := netip.ParseAddr(in.Group)
	if err != nil {
		return Key{}, fmt.Errorf("key for input on %s: group: %w", in.Interface, err)
	}
	k.Dst = dst.As16()
	if in.Source != "" {
		src, err := netip.ParseAddr(in.Source)
		if err != nil {
			return Key{}, fmt.Errorf("key for input on %s: source: %w", in.Interface, err)
		}
		k.Src = src.As16()
	}
	return k, nil
}

// Table maps packet keys to rule indexes for the worker's hot path. It is
// immutable after NewTable, so it can be read without locks; a changed
// ruleset gets a new Table.
//
// It is an open-addressing hash table: a power-of-two number of 8-byte
// slots, at most half full, linear probing. A slot holds 32 bits of the
// key's hash and the key's index; the keys themselves sit in a dense array
// beside it. A probe compares the hash bits first and reads the key only
// when they match, so a miss touches the slot array alone and a hit one
// slot plus one key — with 100,000 rules that is 2 MiB of slots and 4 MiB
// of keys instead of 12 MiB of slots holding keys.
type Table struct {
	slots []slot
	keys  []Key // keys[i] is the key whose value is i
	mask  uint64
	// hasSrc reports whether any key is source-specific; when none is,
	// Lookup skips the exact probe and looks up the any-source key only.
	hasSrc bool
}

type slot struct {
	tag uint32 // 32 bits of the key's hash with the low bit set; 0 marks an empty slot
	val int32  // index into keys
}

// NewTable builds a table in which keys[i] maps to i. Two equal keys are
// an error: they would make a packet's rule ambiguous. The table keeps a
// copy of keys.
func NewTable(keys []Key) (*Table, error) {
	if len(keys) > math.MaxInt32/4 {
		return nil, fmt.Errorf("build lookup table: %d keys, at most %d", len(keys), math.MaxInt32/4)
	}
	size := 8
	for size < 2*len(keys) {
		size *= 2
	}
	t := &Table{slots: make([]slot, size), keys: make([]Key, 0, len(keys)), mask: uint64(size - 1)}
	for i := range keys {
		k := &keys[i]
		if j, ok := t.probe(k); ok {
			return nil, fmt.Errorf("build lookup table: keys[%d] and keys[%d] are both %v", j, i, *k)
		}
		t.insert(k)
		if k.Src != ([16]byte{}) {
			t.hasSrc = true
		}
	}
	return t, nil
}

// insert adds k, which is not in t yet, with the value len(t.keys).
func (t *Table) insert(k *Key) {
	h := hashKey(k)
	tag := uint32(h) | 1
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.tag == 0 {
			*s = slot{tag: tag, val: int32(len(t.keys))}
			t.keys = append(t.keys, *k)
			return
		}
	}
}

// Lookup returns the index of the key matching k: the source-specific key
// (k as is) if there is one, else the any-source key (k with Src zeroed).
// It returns (-1, false) when neither is present, or when t is nil. It does
// not allocate or lock, and k is not modified.
func (t *Table) Lookup(k *Key) (int32, bool) {
	if t == nil || len(t.keys) == 0 {
		return -1, false
	}
	anyOnly := k.Src == ([16]byte{})
	if anyOnly || t.hasSrc {
		if v, ok := t.probe(k); ok || anyOnly {
			return v, ok
		}
	}
	anySrc := *k
	anySrc.Src = [16]byte{}
	return t.probe(&anySrc)
}

func (t *Table) probe(k *Key) (int32, bool) {
	h := hashKey(k)
	tag := uint32(h) | 1
	for i := h >> 32 & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s.tag == tag && t.keys[s.val] == *k {
			return s.val, true
		}
		if s.tag == 0 {
			return -1, false
		}
	}
}

// Len returns the number of keys in t; 0 for a nil table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.keys)
}

// hashKey hashes the key with three 64×64→128-bit multiplications, folded
// (the "mum" step of wyhash): one over Dst, one over Src with the ifindex
// and port, which run in parallel, and one combining them. The xor with odd
// constants before each multiply keeps an all-zero word (Src of an
// any-source key, the first half of an IPv4-mapped address) from zeroing
// the product.
func hashKey(k *Key) uint64 {
	const (
		m1 = 0xa0761d6478bd642f
		m2 = 0xe7037ed1a0b428db
		m3 = 0x8ebc6af09c88c6e3
		m4 = 0x589965cc75374cc3
	)
	le := binary.LittleEndian
	x := uint64(uint32(k.IfIndex))<<16 | uint64(k.Port)
	dst := mum(le.Uint64(k.Dst[0:8])^m1, le.Uint64(k.Dst[8:16])^m2)
	src := mum(le.Uint64(k.Src[0:8])^m3, le.Uint64(k.Src[8:16])^x^m4)
	return mum(dst^m2, src^m1)
}

// mum returns the xor of the high and low halves of a*b.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
