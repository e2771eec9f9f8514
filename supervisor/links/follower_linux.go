package links

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultRcvBuf is the receive buffer of the netlink subscriptions, forced
// past net.core.rmem_max (the daemon runs as root): a burst of link events
// (thousands of VLANs created at once) should not overrun it. An overrun
// still costs no correctness: it triggers a full re-list.
const DefaultRcvBuf = 4 << 20

// Follower follows links and addresses over netlink (rtnetlink(7)) and
// reports them to its Sink: a full listing first, then every change.
// When the subscription reports an error — the kernel dropped messages
// because the socket overran (ENOBUFS), or a dump was interrupted — it
// subscribes again and re-lists everything, so the view never silently
// misses a change.
type Follower struct {
	Log  *slog.Logger
	Sink Events
	// NS is the network namespace followed; nil = the daemon's own (tests
	// follow a throwaway namespace).
	NS *netns.NsHandle
	// RcvBuf is the subscriptions' receive buffer; 0 means DefaultRcvBuf
	// (tests shrink it to provoke an overrun).
	RcvBuf int

	handle *netlink.Handle // lists links in NS
}

// subscription is one generation of netlink subscriptions.
type subscription struct {
	links chan netlink.LinkUpdate
	addrs chan netlink.AddrUpdate
	errs  chan error // errors reported by the library's receive loops
	done  chan struct{}
}

// Follow subscribes, reports the initial listing to sink before it returns
// (so rules loaded next resolve at once), then follows changes in a
// goroutine until ctx ends. stopped is closed when that goroutine has
// finished.
func Follow(ctx context.Context, sink Events, log *slog.Logger) (stopped <-chan struct{}, err error) {
	f := &Follower{Log: log, Sink: sink}
	return f.Start(ctx)
}

// Start is Follow for a follower whose fields are set.
func (f *Follower) Start(ctx context.Context) (<-chan struct{}, error) {
	if f.RcvBuf == 0 {
		f.RcvBuf = DefaultRcvBuf
	}
	var err error
	if f.NS != nil {
		f.handle, err = netlink.NewHandleAt(*f.NS)
	} else {
		f.handle, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	sub, err := f.subscribe()
	if err != nil {
		f.handle.Close()
		return nil, err
	}
	if err := f.list(); err != nil {
		sub.close()
		f.handle.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.handle.Close()
		f.Log.Debug("link follower started")
		f.run(ctx, sub)
		f.Log.Debug("link follower stopped")
	}()
	return done, nil
}

// subscribe opens the link and address subscriptions. Links come with a
// listing of the existing ones (ListExisting), delivered in order with the
// changes on the same socket.
func (f *Follower) subscribe() (*subscription, error) {
	s := &subscription{
		links: make(chan netlink.LinkUpdate, 256),
		addrs: make(chan netlink.AddrUpdate, 256),
		errs:  make(chan error, 1),
		done:  make(chan struct{}),
	}
	report := func(err error) {
		select {
		case s.errs <- err:
		default: // one pending error is enough to re-list
		}
	}
	err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
		Namespace: f.NS, ErrorCallback: report, ListExisting: true,
		ReceiveBufferSize: f.RcvBuf, ReceiveBufferForceSize: true,
	})
	if err != nil {
		close(s.done)
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	err = netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{
		Namespace: f.NS, ErrorCallback: report,
		ReceiveBufferSize: f.RcvBuf, ReceiveBufferForceSize: true,
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	return s, nil
}

// close ends the subscriptions and drains their channels in the
// background: the library's receive loops block on a full channel and
// close it when they end.
func (s *subscription) close() {
	close(s.done)
	go func() {
		for range s.links {
		}
	}()
	go func() {
		for range s.addrs {
		}
	}()
}

// list reports a full listing of the links, then of their addresses.
func (f *Follower) list() error {
	links, err := f.handle.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	addrs, err := f.handle.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	all := make([]Link, 0, len(links))
	for _, l := range links {
		all = append(all, linkOf(l.Attrs()))
	}
	f.Sink.LinksListed(all)
	as := make([]Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(*a.IPNet); ok {
			as = append(as, Addr{Index: a.LinkIndex, Prefix: p, Flags: a.Flags})
		}
	}
	f.Sink.AddrsListed(as)
	return nil
}

// run delivers events until ctx ends, re-subscribing and re-listing after
// a subscription error.
func (f *Follower) run(ctx context.Context, sub *subscription) {
	for {
		err := f.follow(ctx, sub)
		sub.close()
		if err == nil {
			return
		}
		f.Log.Warn("netlink subscription lost events; re-listing links", "err", err)
		if sub = f.resync(ctx); sub == nil {
			return
		}
	}
}

// follow delivers events from sub until ctx ends (nil) or the
// subscription fails (the error).
func (f *Follower) follow(ctx context.Context, sub *subscription) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-sub.errs:
			return err
		case u, ok := <-sub.links:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
			f.linkUpdate(u)
		case u, ok := <-sub.addrs:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
			f.addrUpdate(u)
		}
	}
}

// resync subscribes again and re-lists, retrying every second until it
// succeeds or ctx ends (nil).
func (f *Follower) resync(ctx context.Context) *subscription {
	for {
		sub, err := f.subscribe()
		if err == nil {
			if err = f.list(); err == nil {
				return sub
			}
			sub.close()
		}
		f.Log.Error("re-list links", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// linkUpdate reports one link message. Messages of family AF_BRIDGE are
// about bridge port state (an RTM_DELLINK of that family means "left the
// bridge", not "deleted") and are skipped.
func (f *Follower) linkUpdate(u netlink.LinkUpdate) {
	if u.IfInfomsg.Family == unix.AF_BRIDGE {
		return
	}
	l := linkOf(u.Link.Attrs())
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		f.Log.Debug("link changed", "interface", l.Name, "ifindex", l.Index, "up", l.Up)
		f.Sink.LinkChanged(l)
	case unix.RTM_DELLINK:
		f.Log.Debug("link deleted", "interface", l.Name, "ifindex", l.Index)
		f.Sink.LinkDeleted(l)
	}
}

// addrUpdate reports one address message.
func (f *Follower) addrUpdate(u netlink.AddrUpdate) {
	p, ok := prefixOf(u.LinkAddress)
	if !ok {
		return
	}
	f.Log.Debug("address changed", "ifindex", u.LinkIndex, "addr", p, "flags", u.Flags, "present", u.NewAddr)
	f.Sink.AddrChanged(Addr{Index: u.LinkIndex, Prefix: p, Flags: u.Flags}, u.NewAddr)
}

// prefixOf converts a netlink address: IPv4 unmapped, so that the family
// is that of the address.
func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// linkOf is the view of a netlink link: up means IFF_UP and IFF_RUNNING.
func linkOf(a *netlink.LinkAttrs) Link {
	const up = unix.IFF_UP | unix.IFF_RUNNING
	return Link{Name: a.Name, Index: a.Index, Up: a.RawFlags&up == up}
}
