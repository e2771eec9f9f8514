package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"github.com/vishvananda/netns"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/supervisor/links"
)

// followNS starts a link follower on ns feeding sink, stopped at the end of
// the test.
func followNS(t *testing.T, ns *netnstest.NS, sink links.Events, rcvBuf int, log *syncbuf.Buffer) {
	t.Helper()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	f := &links.Follower{Log: testLogger(log), Sink: sink, NS: &h, RcvBuf: rcvBuf}
	stopped, err := f.Start(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-stopped })
}

func TestLinkFollowerDrivesRuleStates(t *testing.T) {
	ns := netnstest.New(t, "lk")
	tm := newTestMaster(t)
	addRules(testRule("r", "mcrv0", "239.1.1.1", 5000, "mcrv1"))(tm)
	followNS(t, ns, tm.master, links.DefaultRcvBuf, tm.log)

	// waitRule waits for rule r's state and the ifindexes the data plane
	// holds for it (0, 0 when it holds nothing).
	waitRule := func(what, state string, in, out int) {
		t.Helper()
		netnstest.WaitFor(t, 2*time.Second, what, func() bool {
			got, _ := tm.status(t, "r")
			wr, sent := tm.dp.rule("r")
			if !sent {
				return got == state && in == 0
			}
			return got == state && wr.InputIfIndex == in && wr.OutputIfIndex[0] == out
		})
	}
	waitRule("rule pending", "pending", 0, 0)

	ns.MustRun("ip", "link", "add", "mcrv0", "type", "veth", "peer", "name", "mcrv1")
	ns.MustRun("ip", "link", "set", "mcrv1", "up")
	ns.MustRun("ip", "link", "set", "mcrv0", "up")
	in, out := ns.IfIndex("mcrv0"), ns.IfIndex("mcrv1")
	waitRule("rule active once the veth exists and is up", "active", in, out)

	ns.MustRun("ip", "link", "set", "mcrv0", "down")
	waitRule("rule down", "down", in, out)
	ns.MustRun("ip", "link", "set", "mcrv0", "up")
	waitRule("rule active again", "active", in, out)

	// An address added to the output interface is sent with the rule (the
	// addresses its datagrams may leave from); removing it takes it out.
	hasAddr := func() bool {
		wr, _ := tm.dp.rule("r")
		return len(wr.OutputAddrs) > 0 && slices.Contains(wr.OutputAddrs[0], "10.9.0.1")
	}
	for _, op := range []string{"add", "del"} {
		ns.MustRun("ip", "addr", op, "10.9.0.1/24", "dev", "mcrv1")
		netnstest.WaitFor(t, 2*time.Second, "the output's addresses after ip addr "+op,
			func() bool { return hasAddr() == (op == "add") })
	}

	// A rename takes the rule off the interface; renaming it back (a
	// link must be down to be renamed) brings it back.
	ns.MustRun("ip", "link", "set", "mcrv0", "down")
	ns.MustRun("ip", "link", "set", "mcrv0", "name", "mcrw0")
	waitRule("rule pending after its interface was renamed", "pending", 0, 0)
	ns.MustRun("ip", "link", "set", "mcrw0", "name", "mcrv0")
	ns.MustRun("ip", "link", "set", "mcrv0", "up")
	waitRule("rule active after the rename back", "active", in, out)

	ns.MustRun("ip", "link", "del", "mcrv0") // takes its peer along
	waitRule("rule pending after deletion", "pending", 0, 0)

	ns.MustRun("ip", "link", "add", "mcrv0", "type", "veth", "peer", "name", "mcrv1")
	ns.MustRun("ip", "link", "set", "mcrv1", "up")
	ns.MustRun("ip", "link", "set", "mcrv0", "up")
	in2, out2 := ns.IfIndex("mcrv0"), ns.IfIndex("mcrv1")
	if in2 == in {
		t.Fatalf("recreated veth kept ifindex %d", in)
	}
	waitRule("rule active on the recreated veth", "active", in2, out2)
	if got := tm.joined(); len(got) != 1 || got[0] != fmt.Sprintf("239.1.1.1@%d", in2) {
		t.Errorf("memberships %v, want only 239.1.1.1@%d", got, in2)
	}
}

// gatedSink holds every event until the gate opens, so the netlink socket
// behind the follower overruns.
type gatedSink struct {
	links.Events
	gate chan struct{}

	mu     sync.Mutex
	lists  int
	events int
}

func (g *gatedSink) LinkChanged(l links.Link) {
	<-g.gate
	g.mu.Lock()
	g.events++
	g.mu.Unlock()
	g.Events.LinkChanged(l)
}

func (g *gatedSink) LinksListed(all []links.Link) {
	g.mu.Lock()
	g.lists++
	g.mu.Unlock()
	g.Events.LinksListed(all)
}

func TestLinkFollowerRelistsAfterOverrun(t *testing.T) {
	ns := netnstest.New(t, "ov")
	tm := newTestMaster(t)
	const n = 200 // veth pairs: 400 links
	for i := range n {
		addRules(testRule(fmt.Sprintf("r%d", i), fmt.Sprintf("mcra%d", i), "239.1.1.1", 5000, fmt.Sprintf("mcrb%d", i)))(tm)
	}
	sink := &gatedSink{Events: tm.master, gate: make(chan struct{})}
	logs := &syncbuf.Buffer{}
	// The smallest receive buffer the kernel allows (SOCK_MIN_RCVBUF)
	// holds a couple of link messages.
	followNS(t, ns, sink, 1, logs)
	var open sync.Once
	release := func() { open.Do(func() { close(sink.gate) }) }
	t.Cleanup(release) // runs before the follower's cleanup waits for it

	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "link add mcra%d type veth peer name mcrb%d\n", i, i)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create %d veth pairs: %v: %s", n, err, out)
	}
	release()

	netnstest.WaitFor(t, 5*time.Second, fmt.Sprintf("all %d rules resolved (down)", n), func() bool {
		for _, rs := range tm.list() {
			if wr, ok := tm.dp.rule(rs.ID); rs.State != "down" || !ok || wr.OutputIfIndex[0] == 0 {
				return false
			}
		}
		return true
	})
	sink.mu.Lock()
	lists, events := sink.lists, sink.events
	sink.mu.Unlock()
	if lists < 2 || !strings.Contains(logs.String(), "netlink subscription lost events") {
		t.Errorf("%d listings (want a re-list after the overrun), %d events; log:\n%s", lists, events, logs)
	}
	t.Logf("%d links created: %d events delivered, %d listings", 2*n, events, lists)
}
