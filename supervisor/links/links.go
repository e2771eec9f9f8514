package links

import (
	"maps"
	"net/netip"
	"slices"
)

// Link is one network interface as the supervisor's netlink view sees it.
type Link struct {
	Name  string
	Index int
	// Up is IFF_UP and IFF_RUNNING: administratively up and operationally
	// up (or "unknown", which the kernel counts as up for devices without
	// carrier reporting; see dev_get_flags in net/core/dev.c). A veth whose
	// peer is down, or a cable pulled, is not Up: no traffic arrives there.
	Up bool
}

// Events is the seam between the netlink follower (follower_linux.go) and
// the rule owner (the supervisor): the follower reports what the kernel
// says, unit tests script the same calls. Events may come duplicated and, for
// one name, out of order (a recreated interface's new link before the old
// one's deletion); the receiver converges to the latest state it was told.
type Events interface {
	// LinkChanged reports that a link exists with these attributes: it
	// appeared, changed flags or was renamed. (Netlink's RTM_NEWLINK does
	// not tell "added" from "changed", so neither does the seam.)
	LinkChanged(l Link)
	// LinkDeleted reports that the link with l.Index is gone.
	LinkDeleted(l Link)
	// LinksListed replaces the whole view with a fresh listing; the
	// follower sends it at start and whenever the subscription may have
	// lost events (socket overrun), so no gap stays unnoticed.
	LinksListed(all []Link)
	// AddrChanged reports that address a exists (RTM_NEWADDR: added, or
	// its flags changed) or, when !present, is gone (RTM_DELADDR).
	AddrChanged(a Addr, present bool)
	// AddrsListed replaces every address with a fresh listing, sent right
	// after LinksListed.
	AddrsListed(all []Addr)
}

// Addr is one address of a link, as the netlink view sees it.
type Addr struct {
	Index  int
	Prefix netip.Prefix
	// Flags are the address's IFA_F_* flags: the kernel never picks a
	// tentative IPv6 address as a source (RFC 4862 §5.4) and avoids a
	// deprecated one (RFC 6724 rule 3), so a flag change (DAD completing)
	// can change the source it derives, as an added address can.
	Flags int
}

// View resolves interface names to links. It is keyed by ifindex, the
// kernel's identity of a link; names are unique among the kernel's links at
// any instant, so a link claiming a name another index holds means that
// other link is gone (its deletion arrives late, or was lost).
//
// Each change returns the names whose resolution may have changed, for the
// rule owner to re-resolve the rules on them. It is not safe for
// concurrent use.
type View struct {
	byIndex map[int]Link
	byName  map[string]int
}

func NewView() View {
	return View{byIndex: map[int]Link{}, byName: map[string]int{}}
}

// Lookup returns the link named name.
func (v *View) Lookup(name string) (Link, bool) {
	idx, ok := v.byName[name]
	if !ok {
		return Link{}, false
	}
	return v.byIndex[idx], true
}

// ByIndex returns the link with ifindex ix.
func (v *View) ByIndex(ix int) (Link, bool) {
	l, ok := v.byIndex[ix]
	return l, ok
}

// Set records that l exists as given.
func (v *View) Set(l Link) (touched []string) {
	old, had := v.byIndex[l.Index]
	if had && old == l {
		return nil
	}
	if had && old.Name != l.Name {
		delete(v.byName, old.Name)
		touched = append(touched, old.Name)
	}
	if other, taken := v.byName[l.Name]; taken && other != l.Index {
		delete(v.byIndex, other)
	}
	v.byIndex[l.Index] = l
	v.byName[l.Name] = l.Index
	return append(touched, l.Name)
}

// Remove records that the link with l.Index is gone. A deletion of an index
// the view no longer holds (a duplicate, or one overtaken by the recreated
// link) changes nothing.
func (v *View) Remove(l Link) (touched []string) {
	old, had := v.byIndex[l.Index]
	if !had {
		return nil
	}
	delete(v.byIndex, l.Index)
	if v.byName[old.Name] == l.Index {
		delete(v.byName, old.Name)
	}
	return []string{old.Name}
}

// Replace makes the view exactly all and returns the names that resolve
// differently than before (appeared, vanished, or another index or state).
func (v *View) Replace(all []Link) (touched []string) {
	next := NewView()
	for _, l := range all {
		next.Set(l)
	}
	for name := range v.byName {
		before, _ := v.Lookup(name)
		if after, ok := next.Lookup(name); !ok || after != before {
			touched = append(touched, name)
		}
	}
	for name := range next.byName {
		if _, ok := v.byName[name]; !ok {
			touched = append(touched, name)
		}
	}
	*v = next
	return touched
}

// addrFamily is one family's addresses on one link.
type addrFamily struct {
	index int
	v6    bool
}

// Addrs holds the addresses of every link, per family: those an egress
// socket without a source address sends from (the kernel picks one per
// destination). It tells the rule owner when a link's addresses really
// changed, and only then (a duplicated event, or a re-list that finds what
// the view already holds, changes nothing). It is not safe for concurrent
// use.
type Addrs struct {
	byFamily map[addrFamily]map[netip.Prefix]int // address → flags
}

func NewAddrs() Addrs {
	return Addrs{byFamily: map[addrFamily]map[netip.Prefix]int{}}
}

func familyOf(a Addr) addrFamily {
	return addrFamily{index: a.Index, v6: a.Prefix.Addr().Is6()}
}

// List returns the addresses of family v6 on the link with ifindex, as
// canonical text in ascending order.
func (v *Addrs) List(ifindex int, v6 bool) []string {
	flags := v.byFamily[addrFamily{ifindex, v6}]
	if len(flags) == 0 {
		return nil
	}
	addrs := make([]netip.Addr, 0, len(flags))
	for p := range flags {
		addrs = append(addrs, p.Addr())
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Set records that a exists and reports whether that is a change.
func (v *Addrs) Set(a Addr) bool {
	flags := v.byFamily[familyOf(a)]
	if flags == nil {
		flags = map[netip.Prefix]int{}
		v.byFamily[familyOf(a)] = flags
	}
	if f, ok := flags[a.Prefix]; ok && f == a.Flags {
		return false
	}
	flags[a.Prefix] = a.Flags
	return true
}

// Remove records that a is gone and reports whether that is a change.
func (v *Addrs) Remove(a Addr) bool {
	flags := v.byFamily[familyOf(a)]
	if _, ok := flags[a.Prefix]; !ok {
		return false
	}
	delete(flags, a.Prefix)
	return true
}

// Replace makes the view exactly all and returns the ifindexes whose
// addresses (of either family) changed.
func (v *Addrs) Replace(all []Addr) (changed []int) {
	next := map[addrFamily]map[netip.Prefix]int{}
	for _, a := range all {
		f := familyOf(a)
		if next[f] == nil {
			next[f] = map[netip.Prefix]int{}
		}
		next[f][a.Prefix] = a.Flags
	}
	seen := map[int]bool{}
	for f := range v.byFamily {
		if !maps.Equal(v.byFamily[f], next[f]) && !seen[f.index] {
			seen[f.index] = true
			changed = append(changed, f.index)
		}
	}
	for f := range next {
		if _, ok := v.byFamily[f]; !ok && !seen[f.index] {
			seen[f.index] = true
			changed = append(changed, f.index)
		}
	}
	v.byFamily = next
	return changed
}

// Indexes returns the ifindexes the view holds addresses for, ascending.
func (v *Addrs) Indexes() []int {
	var ixs []int
	for f := range v.byFamily {
		if !slices.Contains(ixs, f.index) {
			ixs = append(ixs, f.index)
		}
	}
	slices.Sort(ixs)
	return ixs
}

// Forget drops what the view holds for the link with ifindex (it is gone).
func (v *Addrs) Forget(ifindex int) {
	delete(v.byFamily, addrFamily{ifindex, false})
	delete(v.byFamily, addrFamily{ifindex, true})
}
