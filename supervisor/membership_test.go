package supervisor

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// nthGroup returns the IPv4 group 239.1.x.y numbered i.
func nthGroup(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)})
}

func TestMembershipsPoolPastThePerSocketCap(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	for i := range 5000 {
		if err := m.join(membership{ifindex: 3, group: nthGroup(i)}); err != nil {
			t.Fatalf("join group %d: %v", i, err)
		}
	}
	groups, sockets := m.count()
	if groups != 5000 || sockets != 250 || k.open != 250 {
		t.Fatalf("5000 groups at 20 per socket: %d groups on %d sockets (%d open), want 5000 on 250", groups, sockets, k.open)
	}
	for i := range 5000 {
		if err := m.leave(membership{ifindex: 3, group: nthGroup(i)}); err != nil {
			t.Fatalf("leave group %d: %v", i, err)
		}
	}
	if groups, sockets := m.count(); groups != 0 || sockets != 0 || k.open != 0 {
		t.Fatalf("after leaving all: %d groups on %d sockets, %d open; want none", groups, sockets, k.open)
	}
}

func TestMembershipsShareSocketsPerInterfaceAndFamily(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	joins := []membership{
		{ifindex: 3, group: netip.MustParseAddr("239.1.1.1")},
		{ifindex: 3, group: netip.MustParseAddr("239.1.1.2")},
		{ifindex: 3, group: netip.MustParseAddr("ff3e::1")},
		{ifindex: 3, group: netip.MustParseAddr("ff3e::2")},
		{ifindex: 4, group: netip.MustParseAddr("239.1.1.1")},
	}
	for _, g := range joins {
		if err := m.join(g); err != nil {
			t.Fatal(err)
		}
	}
	if _, sockets := m.count(); sockets != 3 {
		t.Errorf("5 groups on (3, v4), (3, v6), (4, v4): %d sockets, want 3", sockets)
	}
}

func TestMembershipsReferenceCount(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	g := membership{ifindex: 3, group: netip.MustParseAddr("239.1.1.1")}
	for range 2 {
		if err := m.join(g); err != nil {
			t.Fatal(err)
		}
	}
	if k.opened != 1 {
		t.Fatalf("two references on one group opened %d sockets, want 1", k.opened)
	}
	m.leave(g)
	if groups, _ := m.count(); groups != 1 {
		t.Fatalf("after one of two leaves: %d groups joined, want 1", groups)
	}
	m.leave(g)
	if groups, sockets := m.count(); groups != 0 || sockets != 0 || k.open != 0 {
		t.Fatalf("after the last leave: %d groups, %d sockets, %d open; want none", groups, sockets, k.open)
	}
}

func TestMembershipsSourceSpecific(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	group := netip.MustParseAddr("232.1.1.1")
	// 25 sources of one group: 10 per socket (igmp_max_msf).
	for i := range 25 {
		src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		if err := m.join(membership{ifindex: 3, group: group, source: src}); err != nil {
			t.Fatalf("join source %d: %v", i, err)
		}
	}
	if groups, sockets := m.count(); groups != 25 || sockets != 3 {
		t.Errorf("25 sources at 10 per socket: %d memberships on %d sockets, want 25 on 3", groups, sockets)
	}
	// Any-source on the same group cannot share a socket with its
	// source-specific joins (EINVAL in the kernel): it gets its own.
	if err := m.join(membership{ifindex: 3, group: group}); err != nil {
		t.Fatalf("any-source join next to source-specific ones: %v", err)
	}
	if _, sockets := m.count(); sockets != 4 {
		t.Errorf("any-source join: %d sockets, want 4", sockets)
	}
}

func TestMembershipsJoinErrors(t *testing.T) {
	k := newFakeKernel(20, 10)
	bad := netip.MustParseAddr("239.6.6.6")
	k.fail[bad] = syscall.EADDRNOTAVAIL
	m := newMemberships(k.openSocket)
	good := membership{ifindex: 3, group: netip.MustParseAddr("239.1.1.1")}
	if err := m.join(good); err != nil {
		t.Fatal(err)
	}
	err := m.join(membership{ifindex: 3, group: bad})
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("join of a failing group: %v, want EADDRNOTAVAIL", err)
	}
	if groups, sockets := m.count(); groups != 1 || sockets != 1 || k.open != 1 {
		t.Errorf("after a failed join: %d groups, %d sockets, %d open; want 1, 1, 1", groups, sockets, k.open)
	}
	// A cap of 0 (igmp_max_memberships=0) fails on a fresh socket too,
	// which is closed again.
	k.maxGroups = 0
	err = m.join(membership{ifindex: 5, group: netip.MustParseAddr("239.1.1.2")})
	if !errors.Is(err, syscall.ENOBUFS) || k.open != 1 {
		t.Errorf("join with no room anywhere: %v with %d sockets open, want ENOBUFS and 1", err, k.open)
	}
}

func TestMembershipsRefillFreedRoom(t *testing.T) {
	k := newFakeKernel(2, 10)
	m := newMemberships(k.openSocket)
	for i := range 4 {
		m.join(membership{ifindex: 3, group: nthGroup(i)})
	}
	m.leave(membership{ifindex: 3, group: nthGroup(0)})
	m.join(membership{ifindex: 3, group: nthGroup(9)})
	if k.opened != 2 {
		t.Errorf("a join after a leave opened %d sockets in all, want 2 (it reuses the freed room)", k.opened)
	}
}

func TestMembershipsClose(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	for i := range 45 {
		m.join(membership{ifindex: 3, group: nthGroup(i)})
	}
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	got := []int{k.open, len(m.held), len(m.pools)}
	if diff := cmp.Diff([]int{0, 0, 0}, got); diff != "" {
		t.Errorf("after close [open sockets, held, pools] (-want +got):\n%s", diff)
	}
}

// TestMembershipsRefillInPoolOrder leaves groups on full sockets of a pool
// and joins new ones: each goes to the first socket with room again, in the
// order the sockets were opened, and no socket more is opened.
func TestMembershipsRefillInPoolOrder(t *testing.T) {
	k := newFakeKernel(20, 10)
	m := newMemberships(k.openSocket)
	for i := range 100 {
		if err := m.join(membership{ifindex: 3, group: nthGroup(i)}); err != nil {
			t.Fatal(err)
		}
	}
	pool := m.pools[poolKey{3, false}]
	sockOf := func(g membership) int {
		for i, ps := range pool {
			if m.held[g].sock == ps {
				return i
			}
		}
		return -1
	}
	// Leave one group of the fourth socket, then one of the second.
	for _, i := range []int{65, 25} {
		if err := m.leave(membership{ifindex: 3, group: nthGroup(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for i := 100; i < 103; i++ {
		g := membership{ifindex: 3, group: nthGroup(i)}
		if err := m.join(g); err != nil {
			t.Fatal(err)
		}
		got = append(got, sockOf(g))
	}
	// The third new group finds every socket full and opens a sixth.
	if diff := cmp.Diff([]int{1, 3, -1}, got); diff != "" {
		t.Errorf("sockets the new groups went to (-want +got):\n%s", diff)
	}
	if k.opened != 6 {
		t.Errorf("%d sockets opened, want 6", k.opened)
	}
}

// BenchmarkJoin100kGroups joins 100,000 groups on one interface (5,000
// helper sockets at the kernel's default cap of 20) and leaves them: a
// LoadConfig of 100,000 rules does this under the ruleset lock.
func BenchmarkJoin100kGroups(b *testing.B) {
	const n = 100_000
	groups := make([]membership, n)
	for i := range groups {
		groups[i] = membership{ifindex: 3, group: netip.AddrFrom4([4]byte{239, byte(i >> 16), byte(i >> 8), byte(i)})}
	}
	for range b.N {
		m := newMemberships(newFakeKernel(20, 10).openSocket)
		for _, g := range groups {
			if err := m.join(g); err != nil {
				b.Fatal(err)
			}
		}
		for _, g := range groups {
			if err := m.leave(g); err != nil {
				b.Fatal(err)
			}
		}
	}
}
