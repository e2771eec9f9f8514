package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/syncbuf"

	"golang.org/x/sys/unix"
)

var seq atomic.Uint32

// RequireRoot skips the test unless it runs as root with iproute2 present:
// namespace tests need CAP_NET_ADMIN and CAP_NET_RAW. MCR_SKIP_PRIVILEGED=1
// skips them even as root (`make test-unit`, the race run of `make check`).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Getenv("MCR_SKIP_PRIVILEGED") == "1" {
		t.Skip("skipping privileged test: MCR_SKIP_PRIVILEGED=1")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, AF_PACKET); run `sudo make test`")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: iproute2 `ip` not found (apt-get install iproute2)")
	}
}

// NS is a network namespace created for one test.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace whose name starts with "mcr" and prefix and is
// unique to this test process, brings its loopback up and deletes it when
// the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("mcr%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	n.MustRun("ip", "link", "set", "lo", "up")
	return n
}

// Command returns an exec.Cmd that runs name with args inside the namespace.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// Do runs fn with the calling goroutine's OS thread switched into the
// namespace. setns(2) changes only the calling thread, so the goroutine is
// locked to it; if the thread cannot be switched back it is not unlocked and
// the runtime retires it with the goroutine.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// IfIndex returns the ifindex of a link inside the namespace.
func (n *NS) IfIndex(name string) int {
	n.t.Helper()
	s := strings.TrimSpace(n.MustRun("cat", "/sys/class/net/"+name+"/ifindex"))
	i, err := strconv.Atoi(s)
	if err != nil {
		n.t.Fatalf("ifindex of %s in %s: %v", name, n.Name, err)
	}
	return i
}

// LinkStat reads a counter of /sys/class/net/IF/statistics (e.g.
// "rx_packets") inside the namespace.
func (n *NS) LinkStat(ifname, counter string) uint64 {
	n.t.Helper()
	s := strings.TrimSpace(n.MustRun("cat", "/sys/class/net/"+ifname+"/statistics/"+counter))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		n.t.Fatalf("%s %s in %s: %v", ifname, counter, n.Name, err)
	}
	return v
}

// Veth creates a veth pair with end aIf inside a and end bIf inside b, gives
// each end its addresses (CIDR, e.g. "10.0.0.1/24" or "fd00::1/64"; may be
// empty), disables IPv6 DAD so v6 addresses are usable at once, and sets both
// ends up. The pair is created directly in the two namespaces, never in the
// caller's.
func Veth(t testing.TB, a *NS, aIf string, aAddrs []string, b *NS, bIf string, bAddrs []string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", aIf, "netns", a.Name, "type", "veth",
		"peer", "name", bIf, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("create veth %s@%s - %s@%s: %v: %s", aIf, a.Name, bIf, b.Name, err, out)
	}
	a.SetupLink(aIf, aAddrs...)
	b.SetupLink(bIf, bAddrs...)
	a.WaitIPv6(aIf)
	b.WaitIPv6(bIf)
}

// WaitIPv6 waits until the kernel has configured IPv6 on ifname. It does
// that when the link's operational state turns up, which its link watcher
// reports asynchronously, up to a second after `ip link set up`; until then
// the interface has no ff00::/8 route and drops incoming IPv6 multicast
// (Ip6InNoRoutes). Both ends of a veth must be up for this to happen.
func (n *NS) WaitIPv6(ifname string) {
	n.t.Helper()
	WaitFor(n.t, 5*time.Second, "IPv6 multicast route on "+ifname+" in "+n.Name, func() bool {
		out, err := n.Run("ip", "-6", "route", "show", "table", "local", "dev", ifname)
		return err == nil && strings.Contains(out, "ff00::/8")
	})
}

// SetupLink disables DAD on ifname, adds the addresses and sets it up. It
// does not wait for IPv6 to be ready (a veth is only operationally up once
// its peer is): call WaitIPv6 for that.
func (n *NS) SetupLink(ifname string, addrs ...string) {
	n.t.Helper()
	// The slash form keeps a dot in the name ("eth0.100") a dot.
	n.MustRun("sysctl", "-qw", "net/ipv6/conf/"+ifname+"/accept_dad=0")
	for _, a := range addrs {
		if a != "" {
			n.MustRun("ip", "addr", "add", a, "dev", ifname, "nodad")
		}
	}
	n.MustRun("ip", "link", "set", ifname, "up")
}

// Proc is a process started inside a namespace by Start.
type Proc struct {
	Cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
	err  error
}

// Start starts name with args inside the namespace (or in the test's own
// namespace when n is nil), captures its combined output, and on cleanup
// kills it by pid if it is still running and logs its output when the test
// failed.
func Start(t testing.TB, n *NS, name string, args ...string) *Proc {
	t.Helper()
	var cmd *exec.Cmd
	if n != nil {
		cmd = n.Command(name, args...)
	} else {
		cmd = exec.Command(name, args...)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(cmd.Args, " "), p.Output())
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.Cmd.Path, timeout)
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }
