package worker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/stats"
)

// TestLoopDoesNotAllocatePerPacket runs the worker inside the test process
// and counts the process's heap allocations from before a sender in another
// process starts until a sink has received all 20,000 relayed packets: the
// hot loop of either backend must not allocate per packet. The sender sends
// bursts of 32, so that receive batches form and the UDP GSO path runs.
func TestLoopDoesNotAllocatePerPacket(t *testing.T) {
	netnstest.RequireRoot(t)
	tp := newTopo(t)
	for _, mode := range ingressModes {
		t.Run(mode, func(t *testing.T) {
			const n = 20000
			fds := openFDs(t)
			w := startInProcess(t, tp, mode)
			// No snapshot comes before Shutdown: wait for the log record.
			rules := []controlproto.WorkerRule{tp.rule("alloc", "239.1.1.1:5001@r0", "239.2.2.2:6000@r1", "239.2.2.3:6000@r2")}
			cmds, err := controlproto.SyncCommands(rules, 0)
			mustNoErr(t, err)
			w.send(cmds...)
			logged := fmt.Sprintf(`"msg":"ruleset changed","worker":0,"rules":1,"hash":%q`, controlproto.HashWorkerRules(rules))
			netnstest.WaitFor(t, 5*time.Second, "the ruleset log record", func() bool {
				return strings.Contains(strings.Join(w.logLines(), "\n"), logged)
			})

			var got atomic.Int64
			newCountingSink(t, tp.sink1, "k1", "239.2.2.2:6000", &got)

			sender := tp.src.Command(os.Args[0], "-test.run=^$")
			sender.Env = append(os.Environ(), "MCR_TEST_ROLE=sender",
				fmt.Sprintf("MCR_TEST_SEND=s0 10.0.1.1 239.1.1.1:5001 1 %d 200 50000 32", n))
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			out, err := sender.CombinedOutput()
			if err != nil {
				t.Fatalf("sender: %v: %s", err, out)
			}
			netnstest.WaitFor(t, 10*time.Second, "the sink to receive every packet", func() bool { return got.Load() >= n })
			runtime.ReadMemStats(&m1)
			allocs := m1.Mallocs - m0.Mallocs
			t.Logf("%d heap allocations in the process while %d packets were relayed", allocs, n)
			if allocs > n/100 {
				t.Errorf("%d allocations for %d packets: the loop allocates per packet", allocs, n)
			}
			w.shutdown(t)
			s, rc := w.snapshot("alloc")
			want := stats.RuleCounters{ID: "alloc", PacketsIn: n, BytesIn: n * 200, Outputs: outs(n, 200, 2)}
			if diff := cmp.Diff(want, rc); diff != "" {
				t.Errorf("final counters (-want +got):\n%s", diff)
			}
			if c := s.Counters; c.GSOSends == 0 {
				t.Errorf("no UDP_SEGMENT send (%d datagrams): the GSO path did not run", c.GSODatagrams)
			} else {
				t.Logf("%d UDP_SEGMENT sends carried %d datagrams", c.GSOSends, c.GSODatagrams)
			}
			// Run closed what it opened: once the harness closed its ends,
			// only the sink's socket is left over.
			w.ctl.Close()
			netnstest.WaitFor(t, 5*time.Second, "Run's fds to be closed", func() bool { return openFDs(t) == fds+1 })
		})
	}
}

// openFDs counts the test process's open fds.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	mustNoErr(t, err)
	return len(ents)
}

// newCountingSink is newSink whose reader only counts datagrams, without
// allocating.
func newCountingSink(t *testing.T, ns *netnstest.NS, ifname, addr string, n *atomic.Int64) {
	s := &sink{}
	ap := netip.MustParseAddrPort(addr)
	mustNoErr(t, ns.Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		s.conn = c
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		return errors.Join(setRcvBuf(c, 8<<20), ipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: ap.Addr().AsSlice()}))
	}))
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 1<<16)
		for {
			if _, _, err := s.conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
}

// startInProcess runs Run on a goroutine of the test process, switched into
// the relay namespace, with a stats interval long enough that no snapshot
// is built (and allocated) until Shutdown.
func startInProcess(t *testing.T, tp *topo, mode string) *workerProc {
	return startInProcessEvery(t, tp, mode, time.Hour)
}

// startInProcessEvery is startInProcess with the stats interval given.
func startInProcessEvery(t *testing.T, tp *topo, mode string, interval time.Duration) *workerProc {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	mustNoErr(t, err)
	statsR, statsW, err := os.Pipe()
	mustNoErr(t, err)
	logR, logW, err := os.Pipe()
	mustNoErr(t, err)
	w := &workerProc{t: t, ctl: os.NewFile(uintptr(sp[0]), "ctl"), done: make(chan error, 1), rules: map[string]stats.RuleCounters{}}
	sock := serveSockets(t, tp.relay, nil)
	backend, ring, _ := strings.Cut(mode, "+")
	cfg := Config{Core: -1, Backend: backend, StatsInterval: interval,
		CommandFD: sp[1], StatsFD: int(statsW.Fd()), LogFD: int(logW.Fd()), SocketFD: int(sock.Fd())}
	if ring == noRing {
		cfg.RingBlocks = -1
	}
	if ring == RingBlocks {
		cfg.RxRing = RingBlocks
	}
	go func() {
		w.done <- tp.relay.Do(func() error { return Run(cfg) })
		unix.Close(sp[1])
		statsW.Close()
		logW.Close()
		sock.Close()
	}()
	go w.readStats(statsR)
	go w.readLogs(logR)
	t.Cleanup(func() {
		w.ctl.Close() // EOF ends a worker the test did not shut down
		if err := <-w.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		w.done <- nil
		if t.Failed() {
			t.Logf("logs:\n%s", strings.Join(w.logLines(), "\n"))
		}
	})
	return w
}

// shutdown sends Shutdown and waits for the worker to exit and its final
// snapshot to be read.
func (w *workerProc) shutdown(t *testing.T) {
	t.Helper()
	seen := w.seenSnapshots()
	w.send(controlproto.WorkerCommand{Type: controlproto.WShutdown})
	select {
	case err := <-w.done:
		w.done <- err
		if err != nil {
			t.Fatalf("worker exited with %v after Shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("worker still running 5 s after Shutdown")
	}
	netnstest.WaitFor(t, time.Second, "the final snapshot", func() bool { return w.seenSnapshots() > seen })
}
