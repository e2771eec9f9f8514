package supervisor

// link is one network interface as the supervisor's netlink view sees it.
type link struct {
	Name  string
	Index int
	// Up is IFF_UP and IFF_RUNNING: administratively up and operationally
	// up (or "unknown", which the kernel counts as up for devices without
	// carrier reporting; see dev_get_flags in net/core/dev.c). A veth whose
	// peer is down, or a cable pulled, is not Up: no traffic arrives there.
	Up bool
}

// linkEvents is the seam between the netlink follower (links_linux.go) and
// the rule owner (master): the follower reports what the kernel says,
// unit tests script the same calls. Events may come duplicated and, for
// one name, out of order (a recreated interface's new link before the old
// one's deletion); the receiver converges to the latest state it was told.
type linkEvents interface {
	// linkChanged reports that a link exists with these attributes: it
	// appeared, changed flags or was renamed. (Netlink's RTM_NEWLINK does
	// not tell "added" from "changed", so neither does the seam.)
	linkChanged(l link)
	// linkDeleted reports that the link with l.Index is gone.
	linkDeleted(l link)
	// linksListed replaces the whole view with a fresh listing; the
	// follower sends it at start and whenever the subscription may have
	// lost events (socket overrun), so no gap stays unnoticed.
	linksListed(all []link)
	// addrsChanged reports that the addresses of the link with ifindex
	// changed; 0 means they may have changed anywhere (after an overrun).
	addrsChanged(ifindex int)
}

// linkView resolves interface names to links. It is keyed by ifindex, the
// kernel's identity of a link; names are unique among the kernel's links at
// any instant, so a link claiming a name another index holds means that
// other link is gone (its deletion arrives late, or was lost).
//
// Each change returns the names whose resolution may have changed, for the
// master to re-resolve the rules on them. It is not safe for concurrent use.
type linkView struct {
	byIndex map[int]link
	byName  map[string]int
}

func newLinkView() linkView {
	return linkView{byIndex: map[int]link{}, byName: map[string]int{}}
}

// lookup returns the link named name.
func (v *linkView) lookup(name string) (link, bool) {
	idx, ok := v.byName[name]
	if !ok {
		return link{}, false
	}
	return v.byIndex[idx], true
}

// set records that l exists as given.
func (v *linkView) set(l link) (touched []string) {
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

// remove records that the link with l.Index is gone. A deletion of an index
// the view no longer holds (a duplicate, or one overtaken by the recreated
// link) changes nothing.
func (v *linkView) remove(l link) (touched []string) {
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

// replace makes the view exactly all and returns the names that resolve
// differently than before (appeared, vanished, or another index or state).
func (v *linkView) replace(all []link) (touched []string) {
	next := newLinkView()
	for _, l := range all {
		next.set(l)
	}
	for name := range v.byName {
		before, _ := v.lookup(name)
		if after, ok := next.lookup(name); !ok || after != before {
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
