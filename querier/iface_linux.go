package querier

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addressRefresh is how often an Interface re-reads its addresses on its
// own; RefreshAddresses makes it do so at once.
const addressRefresh = 5 * time.Second

// Drops counts received packets an Interface did not use, by reason (the
// Err values of ParsePacket).
type Drops struct {
	Truncated, Checksum, QueryLength, Group, Fragment, HopLimit, RouterAlert, Source, Other uint64
}

func (d *Drops) count(err error) {
	switch err {
	case ErrTruncated:
		d.Truncated++
	case ErrChecksum:
		d.Checksum++
	case ErrQueryLength:
		d.QueryLength++
	case ErrGroup:
		d.Group++
	case ErrFragment:
		d.Fragment++
	case ErrHopLimit:
		d.HopLimit++
	case ErrRouterAlert:
		d.RouterAlert++
	case ErrSource:
		d.Source++
	default:
		d.Other++
	}
}

// Interface runs IGMP and MLD on one network interface: one Router per
// family, the packet socket that hears every report and query on the
// link, the raw sockets that send our queries, and the goroutine that
// feeds packets and the clock to the routers. Its methods are safe for
// concurrent use.
//
// Opening one needs CAP_NET_RAW (packet and raw sockets, IPV6_HOPOPTS):
// the supervisor, which runs as root, opens it; workers never see these
// sockets.
type Interface struct {
	ifindex int
	log     *slog.Logger
	events  func(Event)
	rx      *os.File
	tx4     *sender4
	tx6     *sender6
	// nl reads the interface's addresses. Its sockets are opened in the
	// network namespace Open runs in, as the others are, so the
	// Interface works the same from whatever thread it runs on.
	nl   *netlink.Handle
	done chan struct{}

	// deliverMu serialises event delivery, so that events arrive in the
	// order the routers emitted them.
	deliverMu sync.Mutex

	mu sync.Mutex // guards the fields below
	// routers[0] is IPv4's, routers[1] IPv6's.
	routers    [2]*Router
	received   uint64
	drops      Drops
	refreshAt  time.Time
	pending    []Event // events to deliver once mu is released
	lastSendOK [2]bool
}

// Open starts IGMP and MLD on the interface with ifindex, with cfg for both
// families (nil: defaults), and returns once the sockets are open. events,
// which may be nil, gets every Event from the Interface's goroutine, never
// with a lock held: it may call the Interface's methods, but must not
// block for long (reports wait meanwhile), nor call SetQuerier or
// RefreshAddresses, which deliver events themselves. log gets the start, stop, role
// changes and send failures; nil means slog.Default().
func Open(ifindex int, cfg *Config, events func(Event), log *slog.Logger) (*Interface, error) {
	if log == nil {
		log = slog.Default()
	}
	if events == nil {
		events = func(Event) {}
	}
	i := &Interface{ifindex: ifindex, log: log.With("ifindex", ifindex), events: events, done: make(chan struct{})}
	i.lastSendOK = [2]bool{true, true}
	var err error
	if i.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("start IGMP/MLD on ifindex %d: open netlink: %w", ifindex, err)
	}
	if i.tx4, err = openSender4(ifindex); err != nil {
		i.nl.Close()
		return nil, fmt.Errorf("start IGMP on ifindex %d: %w", ifindex, err)
	}
	if i.tx6, err = openSender6(ifindex); err != nil {
		unix.Close(i.tx4.fd)
		i.nl.Close()
		return nil, fmt.Errorf("start MLD on ifindex %d: %w", ifindex, err)
	}
	emit := func(ev Event) { i.pending = append(i.pending, ev) }
	for n, s := range []Sender{loggingSender{i, 0, i.tx4}, loggingSender{i, 1, i.tx6}} {
		if i.routers[n], err = NewRouter(Family(n+1), ifindex, cfg, s, emit); err != nil {
			i.closeSenders()
			return nil, fmt.Errorf("start IGMP/MLD on ifindex %d: %w", ifindex, err)
		}
	}
	if i.rx, err = openReceiver(ifindex); err != nil {
		i.closeSenders()
		return nil, fmt.Errorf("start IGMP/MLD on ifindex %d: %w", ifindex, err)
	}
	i.mu.Lock()
	i.refreshLocked(time.Now())
	i.mu.Unlock()
	i.log.Info("IGMP/MLD started", "querier", i.routers[0].cfg.Querier)
	go i.run()
	i.deliver()
	return i, nil
}

// Close stops the Interface and closes its sockets. The table is gone with
// it; no events come after Close returns.
func (i *Interface) Close() error {
	err := i.rx.Close()
	<-i.done
	i.closeSenders()
	i.log.Info("IGMP/MLD stopped")
	return err
}

func (i *Interface) closeSenders() {
	unix.Close(i.tx4.fd)
	unix.Close(i.tx6.fd)
	i.nl.Close()
}

// Allowed reports whether the interface's listeners of group want traffic
// from source (the zero netip.Addr: from any source); see Router.Allowed.
func (i *Interface) Allowed(group, source netip.Addr) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.router(group).Allowed(group, source)
}

// Groups returns a snapshot of the listener table, IPv4 groups first, each
// family sorted by address.
func (i *Interface) Groups() []Group {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append(i.routers[0].Groups(), i.routers[1].Groups()...)
}

// Status returns each family's election state and counters, IPv4 first,
// with the receive counters of the interface's packet socket.
func (i *Interface) Status() (st [2]Status, received uint64, drops Drops) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return [2]Status{i.routers[0].Status(), i.routers[1].Status()}, i.received, i.drops
}

// SetQuerier turns querying on or off on both families, keeping the table.
func (i *Interface) SetQuerier(on bool) {
	i.mu.Lock()
	now := time.Now()
	for _, r := range i.routers {
		r.SetQuerier(now, on)
	}
	i.mu.Unlock()
	i.deliver()
}

// RefreshAddresses re-reads the interface's addresses now, as it does
// every few seconds anyway: call it when netlink reports a change.
func (i *Interface) RefreshAddresses() {
	i.mu.Lock()
	i.refreshLocked(time.Now())
	i.mu.Unlock()
	i.deliver()
}

func (i *Interface) router(group netip.Addr) *Router {
	if group.Is6() {
		return i.routers[1]
	}
	return i.routers[0]
}

// refreshLocked gives each router the interface's address: the first
// primary IPv4 address, and the first link-local IPv6 address that is not
// tentative (the kernel refuses a tentative source, RFC 4862 §5.4).
func (i *Interface) refreshLocked(now time.Time) {
	i.refreshAt = now.Add(addressRefresh)
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: i.ifindex}}
	var v4, v6 netip.Addr
	if list, err := i.nl.AddrList(link, netlink.FAMILY_V4); err == nil {
		for _, a := range list {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && a.Flags&unix.IFA_F_SECONDARY == 0 {
				v4 = ip
				break
			}
		}
	}
	if list, err := i.nl.AddrList(link, netlink.FAMILY_V6); err == nil {
		for _, a := range list {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ok && ip.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				v6 = ip
				break
			}
		}
	}
	i.routers[0].SetAddress(now, v4)
	i.routers[1].SetAddress(now, v6)
}

// deliver hands the events collected under mu to the events function.
func (i *Interface) deliver() {
	i.deliverMu.Lock()
	defer i.deliverMu.Unlock()
	i.mu.Lock()
	evs := i.pending
	i.pending = nil
	i.mu.Unlock()
	for _, ev := range evs {
		if ev.Kind == RoleChanged {
			i.log.Info("IGMP/MLD querier role", "family", ev.Family, "role", ev.Role, "querier", ev.Querier)
		}
		i.events(ev)
	}
}

// run is the Interface's goroutine: it reads packets until the next
// deadline of either router (or the address refresh), and feeds the
// routers what it read and the time. It ends when Close closes the packet
// socket.
func (i *Interface) run() {
	defer close(i.done)
	buf := make([]byte, 1<<16)
	var p Packet
	for {
		i.mu.Lock()
		next := i.refreshAt
		for _, r := range i.routers {
			if d := r.NextDeadline(); !d.IsZero() && d.Before(next) {
				next = d
			}
		}
		i.mu.Unlock()
		if err := i.rx.SetReadDeadline(next); err != nil {
			i.log.Error("IGMP/MLD receive stopped", "err", err)
			return
		}
		n, err := i.rx.Read(buf)
		now := time.Now()
		switch {
		case errors.Is(err, os.ErrClosed):
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			n = 0
		case err != nil:
			// ENETDOWN when the link goes down; the socket works
			// again when it comes back up.
			i.log.Debug("IGMP/MLD receive", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		i.mu.Lock()
		if n > 0 {
			i.received++
			if perr := ParsePacket(buf[:n], &p); perr != nil {
				if perr != ErrNotMembership {
					i.drops.count(perr)
				}
			} else {
				i.router(p.Src).Receive(now, p.Src, &p.Message)
			}
		}
		if !now.Before(i.refreshAt) {
			i.refreshLocked(now)
		}
		for _, r := range i.routers {
			r.Advance(now)
		}
		i.mu.Unlock()
		i.deliver()
	}
}

// loggingSender logs the first failure of a run of failed sends and the
// first success after it, so that a link that is down costs two log lines,
// not one per query.
type loggingSender struct {
	i   *Interface
	fam int
	s   Sender
}

func (l loggingSender) SendQuery(m *Message, src, dst netip.Addr) error {
	err := l.s.SendQuery(m, src, dst)
	ok := err == nil
	if ok != l.i.lastSendOK[l.fam] {
		l.i.lastSendOK[l.fam] = ok
		if ok {
			l.i.log.Info("IGMP/MLD queries sent again", "family", Family(l.fam+1))
		} else {
			l.i.log.Warn("IGMP/MLD query not sent", "family", Family(l.fam+1), "err", err)
		}
	}
	return err
}
