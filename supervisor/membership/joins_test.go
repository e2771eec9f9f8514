package membership_test

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/supervisor/membership"
	"github.com/mcrelay/mcr/supervisor/membership/membershiptest"
)

// nthGroup returns the IPv4 group 239.1.x.y numbered i.
func nthGroup(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{239, 1, byte(i >> 8), byte(i)})
}

func TestMembershipsPoolPastThePerSocketCap(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	for i := range 5000 {
		if err := m.Join(membership.Group{Ifindex: 3, Addr: nthGroup(i)}); err != nil {
			t.Fatalf("join group %d: %v", i, err)
		}
	}
	groups, sockets := m.Count()
	if groups != 5000 || sockets != 250 || k.Open != 250 {
		t.Fatalf("5000 groups at 20 per socket: %d groups on %d sockets (%d open), want 5000 on 250", groups, sockets, k.Open)
	}
	for i := range 5000 {
		if err := m.Leave(membership.Group{Ifindex: 3, Addr: nthGroup(i)}); err != nil {
			t.Fatalf("leave group %d: %v", i, err)
		}
	}
	if groups, sockets := m.Count(); groups != 0 || sockets != 0 || k.Open != 0 {
		t.Fatalf("after leaving all: %d groups on %d sockets, %d open; want none", groups, sockets, k.Open)
	}
}

func TestMembershipsShareSocketsPerInterfaceAndFamily(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	joins := []membership.Group{
		{Ifindex: 3, Addr: netip.MustParseAddr("239.1.1.1")},
		{Ifindex: 3, Addr: netip.MustParseAddr("239.1.1.2")},
		{Ifindex: 3, Addr: netip.MustParseAddr("ff3e::1")},
		{Ifindex: 3, Addr: netip.MustParseAddr("ff3e::2")},
		{Ifindex: 4, Addr: netip.MustParseAddr("239.1.1.1")},
	}
	for _, g := range joins {
		if err := m.Join(g); err != nil {
			t.Fatal(err)
		}
	}
	if _, sockets := m.Count(); sockets != 3 {
		t.Errorf("5 groups on (3, v4), (3, v6), (4, v4): %d sockets, want 3", sockets)
	}
}

func TestMembershipsReferenceCount(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	g := membership.Group{Ifindex: 3, Addr: netip.MustParseAddr("239.1.1.1")}
	for range 2 {
		if err := m.Join(g); err != nil {
			t.Fatal(err)
		}
	}
	if k.Opened != 1 {
		t.Fatalf("two references on one group opened %d sockets, want 1", k.Opened)
	}
	m.Leave(g)
	if groups, _ := m.Count(); groups != 1 {
		t.Fatalf("after one of two leaves: %d groups joined, want 1", groups)
	}
	m.Leave(g)
	if groups, sockets := m.Count(); groups != 0 || sockets != 0 || k.Open != 0 {
		t.Fatalf("after the last leave: %d groups, %d sockets, %d open; want none", groups, sockets, k.Open)
	}
}

func TestMembershipsSourceSpecific(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	group := netip.MustParseAddr("232.1.1.1")
	// 25 sources of one group: 10 per socket (igmp_max_msf).
	for i := range 25 {
		src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		if err := m.Join(membership.Group{Ifindex: 3, Addr: group, Source: src}); err != nil {
			t.Fatalf("join source %d: %v", i, err)
		}
	}
	if groups, sockets := m.Count(); groups != 25 || sockets != 3 {
		t.Errorf("25 sources at 10 per socket: %d memberships on %d sockets, want 25 on 3", groups, sockets)
	}
	// Any-source on the same group cannot share a socket with its
	// source-specific joins (EINVAL in the kernel): it gets its own.
	if err := m.Join(membership.Group{Ifindex: 3, Addr: group}); err != nil {
		t.Fatalf("any-source join next to source-specific ones: %v", err)
	}
	if _, sockets := m.Count(); sockets != 4 {
		t.Errorf("any-source join: %d sockets, want 4", sockets)
	}
}

func TestMembershipsJoinErrors(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	bad := netip.MustParseAddr("239.6.6.6")
	k.Fail[bad] = syscall.EADDRNOTAVAIL
	m := membership.New(k.OpenSocket)
	good := membership.Group{Ifindex: 3, Addr: netip.MustParseAddr("239.1.1.1")}
	if err := m.Join(good); err != nil {
		t.Fatal(err)
	}
	err := m.Join(membership.Group{Ifindex: 3, Addr: bad})
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("join of a failing group: %v, want EADDRNOTAVAIL", err)
	}
	if groups, sockets := m.Count(); groups != 1 || sockets != 1 || k.Open != 1 {
		t.Errorf("after a failed join: %d groups, %d sockets, %d open; want 1, 1, 1", groups, sockets, k.Open)
	}
	// A cap of 0 (igmp_max_memberships=0) fails on a fresh socket too,
	// which is closed again.
	k.MaxGroups = 0
	err = m.Join(membership.Group{Ifindex: 5, Addr: netip.MustParseAddr("239.1.1.2")})
	if !errors.Is(err, syscall.ENOBUFS) || k.Open != 1 {
		t.Errorf("join with no room anywhere: %v with %d sockets open, want ENOBUFS and 1", err, k.Open)
	}
}

func TestMembershipsRefillFreedRoom(t *testing.T) {
	k := membershiptest.NewKernel(2, 10)
	m := membership.New(k.OpenSocket)
	for i := range 4 {
		m.Join(membership.Group{Ifindex: 3, Addr: nthGroup(i)})
	}
	m.Leave(membership.Group{Ifindex: 3, Addr: nthGroup(0)})
	m.Join(membership.Group{Ifindex: 3, Addr: nthGroup(9)})
	if k.Opened != 2 {
		t.Errorf("a join after a leave opened %d sockets in all, want 2 (it reuses the freed room)", k.Opened)
	}
}

func TestMembershipsClose(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	for i := range 45 {
		m.Join(membership.Group{Ifindex: 3, Addr: nthGroup(i)})
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	held, pools := m.Sizes()
	got := []int{k.Open, held, pools}
	if diff := cmp.Diff([]int{0, 0, 0}, got); diff != "" {
		t.Errorf("after close [open sockets, held, pools] (-want +got):\n%s", diff)
	}
}

// TestMembershipsRefillInPoolOrder leaves groups on full sockets of a pool
// and joins new ones: each goes to the first socket with room again, in the
// order the sockets were opened, and no socket more is opened.
func TestMembershipsRefillInPoolOrder(t *testing.T) {
	k := membershiptest.NewKernel(20, 10)
	m := membership.New(k.OpenSocket)
	for i := range 100 {
		if err := m.Join(membership.Group{Ifindex: 3, Addr: nthGroup(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Leave one group of the fourth socket, then one of the second.
	for _, i := range []int{65, 25} {
		if err := m.Leave(membership.Group{Ifindex: 3, Addr: nthGroup(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for i := 100; i < 103; i++ {
		g := membership.Group{Ifindex: 3, Addr: nthGroup(i)}
		if err := m.Join(g); err != nil {
			t.Fatal(err)
		}
		got = append(got, m.SocketIndex(g))
	}
	// The third new group finds every socket full and opens a sixth.
	if diff := cmp.Diff([]int{1, 3, 5}, got); diff != "" {
		t.Errorf("sockets the new groups went to (-want +got):\n%s", diff)
	}
	if k.Opened != 6 {
		t.Errorf("%d sockets opened, want 6", k.Opened)
	}
}

// BenchmarkJoin100kGroups joins 100,000 groups on one interface (5,000
// helper sockets at the kernel's default cap of 20) and leaves them: a
// LoadConfig of 100,000 rules does this under the ruleset lock.
func BenchmarkJoin100kGroups(b *testing.B) {
	const n = 100_000
	groups := make([]membership.Group, n)
	for i := range groups {
		groups[i] = membership.Group{Ifindex: 3, Addr: netip.AddrFrom4([4]byte{239, byte(i >> 16), byte(i >> 8), byte(i)})}
	}
	for range b.N {
		m := membership.New(membershiptest.NewKernel(20, 10).OpenSocket)
		for _, g := range groups {
			if err := m.Join(g); err != nil {
				b.Fatal(err)
			}
		}
		for _, g := range groups {
			if err := m.Leave(g); err != nil {
				b.Fatal(err)
			}
		}
	}
}
