package membership

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"syscall"
)

// Group is one group membership: group Addr (with Source, for a
// source-specific rule) on the interface with Ifindex.
type Group struct {
	Ifindex int
	Addr    netip.Addr
	Source  netip.Addr // the zero Addr: any source
}

// String names the membership's group: "239.1.1.1", or
// "(10.0.0.9, 232.1.1.1)" when source-specific.
func (g Group) String() string {
	if g.Source.IsValid() {
		return fmt.Sprintf("(%s, %s)", g.Source, g.Addr)
	}
	return g.Addr.String()
}

// Socket is a helper socket that holds memberships for one interface
// and family (udp_linux.go: an unbound UDP socket; tests use a fake).
type Socket interface {
	Join(g Group) error
	Leave(g Group) error
	Close() error
}

// Opener opens a helper socket for the interface with ifindex, of
// family IPv6 when v6 is set, IPv4 otherwise.
type Opener func(ifindex int, v6 bool) (Socket, error)

// Joins holds the supervisor's group memberships (IGMP/MLD): it joins
// each distinct membership once however many rules want it, and leaves it
// when the last of them lets go.
//
// Joins go to helper sockets shared per (interface, family), never one per
// group, and pooled: the kernel caps the memberships of one socket
// (net.ipv4.igmp_max_memberships, default 20: ENOBUFS; for IPv6 the socket
// option memory net.core.optmem_max: ENOMEM), and the sources of one group
// on one socket (net.ipv4.igmp_max_msf, default 10: ENOBUFS). When a socket
// is full another one takes the membership, so 5,000 groups on one
// interface all get joined. A socket holding a group any-source cannot also
// hold it source-specific (the kernel refuses a filter-mode change with
// EINVAL), so such a join goes to another socket as well.
//
// It is not safe for concurrent use; the supervisor's master ruleset
// serialises it under its lock.
//
// A pool of 100,000 groups has 5,000 sockets at the default cap, so a join
// must not look at every socket: room and holders index the few that can
// take it.
type Joins struct {
	open  Opener
	pools map[poolKey][]*pooledSocket
	// room holds, per pool, its sockets not known to be full, in the
	// pool's order: a new group goes to the first that takes it.
	room map[poolKey][]*pooledSocket
	// holders are the sockets of a pool that hold a group, any-source or
	// source-specific.
	holders map[groupKey][]*pooledSocket
	held    map[Group]*holding
	opened  int // sockets ever opened: pooledSocket.seq
}

type poolKey struct {
	ifindex int
	v6      bool
}

type groupKey struct {
	poolKey
	group netip.Addr
}

// holding is one joined membership: the socket it is on and how many
// rules want it.
type holding struct {
	sock *pooledSocket
	refs int
}

// pooledSocket is a helper socket and what it holds, per group.
type pooledSocket struct {
	sock   Socket
	groups map[netip.Addr]*groupUse
	// full is set when the socket refused a new group for lack of room
	// and cleared when it leaves one; a full socket is not in room.
	full bool
	seq  int // its place in the pool's order
}

// groupUse is what one socket holds of one group: any-source, or a number
// of sources.
type groupUse struct {
	anySource bool
	sources   int
}

// New returns an empty Joins whose helper sockets open opens.
func New(open Opener) *Joins {
	return &Joins{open: open, pools: map[poolKey][]*pooledSocket{}, room: map[poolKey][]*pooledSocket{},
		holders: map[groupKey][]*pooledSocket{}, held: map[Group]*holding{}}
}

// Join takes one reference on g, joining it if it is the first.
func (m *Joins) Join(g Group) error {
	if h, ok := m.held[g]; ok {
		h.refs++
		return nil
	}
	ps, err := m.place(g)
	if err != nil {
		return err
	}
	u := ps.groups[g.Addr]
	if u == nil {
		u = &groupUse{}
		ps.groups[g.Addr] = u
		gk := groupKey{poolKey{g.Ifindex, g.Addr.Is6()}, g.Addr}
		m.holders[gk] = append(m.holders[gk], ps)
	}
	if g.Source.IsValid() {
		u.sources++
	} else {
		u.anySource = true
	}
	m.held[g] = &holding{sock: ps, refs: 1}
	return nil
}

// place joins g on a socket of its pool that takes it, opening one more if
// none does, and returns that socket.
func (m *Joins) place(g Group) (*pooledSocket, error) {
	key := poolKey{g.Ifindex, g.Addr.Is6()}
	// Sockets already holding the group source-specific take another
	// source without spending a membership; try them first.
	if g.Source.IsValid() {
		for _, ps := range m.holders[groupKey{key, g.Addr}] {
			if !ps.groups[g.Addr].anySource {
				if err := ps.sock.Join(g); !isFull(err) {
					return ps, err
				}
			}
		}
	}
	for i := 0; i < len(m.room[key]); {
		ps := m.room[key][i]
		if ps.groups[g.Addr] != nil {
			i++
			continue
		}
		err := ps.sock.Join(g)
		if !isFull(err) {
			return ps, err
		}
		ps.full = true
		m.room[key] = slices.Delete(m.room[key], i, i+1)
	}
	sock, err := m.open(g.Ifindex, g.Addr.Is6())
	if err != nil {
		return nil, err
	}
	if err := sock.Join(g); err != nil {
		sock.Close()
		return nil, err
	}
	m.opened++
	ps := &pooledSocket{sock: sock, groups: map[netip.Addr]*groupUse{}, seq: m.opened}
	m.pools[key] = append(m.pools[key], ps)
	m.room[key] = append(m.room[key], ps)
	return ps, nil
}

// hasRoom puts ps, which just left a group, back in its pool's room.
func (m *Joins) hasRoom(key poolKey, ps *pooledSocket) {
	if !ps.full {
		return
	}
	ps.full = false
	room := m.room[key]
	i, _ := slices.BinarySearchFunc(room, ps.seq, func(p *pooledSocket, seq int) int { return p.seq - seq })
	m.room[key] = slices.Insert(room, i, ps)
}

// isFull reports whether a join failed for lack of room on the socket.
func isFull(err error) bool {
	return errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Leave drops one reference on g, leaving it when it was the last. The
// membership is forgotten even when the kernel's leave fails (the
// interface is gone, and the kernel with it forgot the group); the error
// is returned for the log.
func (m *Joins) Leave(g Group) error {
	h, ok := m.held[g]
	if !ok {
		return nil
	}
	if h.refs--; h.refs > 0 {
		return nil
	}
	delete(m.held, g)
	ps := h.sock
	err := ps.sock.Leave(g)
	key := poolKey{g.Ifindex, g.Addr.Is6()}
	u := ps.groups[g.Addr]
	if g.Source.IsValid() {
		u.sources--
	} else {
		u.anySource = false
	}
	if !u.anySource && u.sources == 0 {
		delete(ps.groups, g.Addr)
		gk := groupKey{key, g.Addr}
		m.holders[gk] = slices.DeleteFunc(m.holders[gk], func(p *pooledSocket) bool { return p == ps })
		if len(m.holders[gk]) == 0 {
			delete(m.holders, gk)
		}
	}
	m.hasRoom(key, ps)
	if len(ps.groups) == 0 {
		isPs := func(p *pooledSocket) bool { return p == ps }
		m.pools[key] = slices.DeleteFunc(m.pools[key], isPs)
		m.room[key] = slices.DeleteFunc(m.room[key], isPs)
		if len(m.pools[key]) == 0 {
			delete(m.pools, key)
			delete(m.room, key)
		}
		return errors.Join(err, ps.sock.Close())
	}
	return err
}

// Count returns how many distinct memberships are joined and on how many
// helper sockets.
func (m *Joins) Count() (groups, sockets int) {
	for _, p := range m.pools {
		sockets += len(p)
	}
	return len(m.held), sockets
}

// All yields every joined membership with the number of references on it.
func (m *Joins) All() iter.Seq2[Group, int] {
	return func(yield func(Group, int) bool) {
		for g, h := range m.held {
			if !yield(g, h.refs) {
				return
			}
		}
	}
}

// Close leaves every membership (closing a socket drops its memberships in
// the kernel, which sends the leaves) and closes every helper socket.
func (m *Joins) Close() error {
	var errs []error
	for key, pool := range m.pools {
		for _, ps := range pool {
			errs = append(errs, ps.sock.Close())
		}
		delete(m.pools, key)
	}
	clear(m.room)
	clear(m.holders)
	clear(m.held)
	return errors.Join(errs...)
}
