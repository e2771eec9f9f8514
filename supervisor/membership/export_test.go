package membership

// Sizes returns how many memberships m holds and in how many pools, for
// the tests of package membership_test.
func (m *Joins) Sizes() (held, pools int) { return len(m.held), len(m.pools) }

// SocketIndex returns the place of the socket holding g in the pool of its
// interface and family, -1 when g is not held.
func (m *Joins) SocketIndex(g Group) int {
	h := m.held[g]
	if h == nil {
		return -1
	}
	for i, ps := range m.pools[poolKey{g.Ifindex, g.Addr.Is6()}] {
		if ps == h.sock {
			return i
		}
	}
	return -1
}
