package worker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/relaysock"
	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/worker/packet/packettest"
)

// The test binary doubles as the worker process: TestMain runs Run when
// MCR_TEST_ROLE=worker, with fds 3, 4, 5 from exec.Cmd.ExtraFiles, the way
// the supervisor runs `mcrd worker`. With MCR_TEST_ROLE=sender it sends one
// stream (MCR_TEST_SEND: "IF SRC DST STREAM COUNT SIZE PPS BURST") and exits.
func TestMain(m *testing.M) {
	switch os.Getenv("MCR_TEST_ROLE") {
	case "worker":
		os.Exit(runTestWorker())
	case "sender":
		os.Exit(runTestSender())
	}
	os.Exit(m.Run())
}

func runTestSender() int {
	var ifname, src, dst string
	var st stream
	var size int
	if _, err := fmt.Sscan(os.Getenv("MCR_TEST_SEND"), &ifname, &src, &dst, &st.id, &st.count, &size, &st.pps, &st.burst); err != nil {
		fmt.Fprintln(os.Stderr, "sender: MCR_TEST_SEND:", err)
		return 2
	}
	st.size = fixedSize(size)
	if err := sendStream(ifname, netip.MustParseAddr(src), dst, st); err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 1
	}
	return 0
}

func runTestWorker() int {
	id, _ := strconv.Atoi(os.Getenv("MCR_TEST_ID"))
	core, _ := strconv.Atoi(os.Getenv("MCR_TEST_CORE"))
	backend, ring, _ := strings.Cut(os.Getenv("MCR_TEST_BACKEND"), "+")
	cfg := Config{ID: id, Core: core, Backend: backend, StatsInterval: testStatsInterval}
	if ring == noRing {
		cfg.RingBlocks = -1
	}
	if ring == RingBlocks {
		cfg.RxRing = RingBlocks
	}
	if blocks, ok := strings.CutPrefix(ring, "blocks="); ok {
		cfg.RxRing = RingBlocks
		cfg.RingBlocks, _ = strconv.Atoi(blocks)
	}
	if ring == "busy" {
		cfg.BusyPoll = true
	}
	if frames, ok := strings.CutPrefix(ring, "frames="); ok {
		cfg.RingFrames, _ = strconv.Atoi(frames)
	}
	err := Run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// testStatsInterval is the workers' stats period in tests.
const testStatsInterval = 50 * time.Millisecond

var backends = []string{BackendMmsg, BackendUring}

// noRing is the suffix of a backend name (backend+noRing) that runs a
// test worker without receive rings: every packet received on its own.
// The suffix "blocks" gives it block rings (TPACKET_V3), "blocks=N" block
// rings of N blocks, "frames=N" frame rings of N frames (rounded up to a
// block's worth), "busy" the default rings with --busy-poll; without a
// suffix it has the default frame rings.
const noRing = "noring"

// ingressModes are the backends with frame rings, block rings and without
// receive rings.
var ingressModes = []string{BackendMmsg, BackendUring, BackendMmsg + "+" + RingBlocks, BackendUring + "+" + RingBlocks,
	BackendMmsg + "+" + noRing, BackendUring + "+" + noRing}

// workerProc is a worker process driven over its socketpair, with its stats
// and logs read into memory.
type workerProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	ctl  *os.File
	out  bytes.Buffer
	done chan error

	mu    sync.Mutex
	last  stats.Snapshot
	seen  int                           // snapshots read
	rules map[string]stats.RuleCounters // latest counters of every rule reported
	logs  []string
}

// startWorker starts a worker process inside ns, which opens a socket of
// its own for each request.
func startWorker(t *testing.T, ns *netnstest.NS, backend string, id, core int) *workerProc {
	t.Helper()
	return startWorkerWith(t, ns, backend, id, core, nil)
}

// startWorkerWith starts a worker process inside ns whose socket requests
// open answers (nil: relaysock.Open).
func startWorkerWith(t *testing.T, ns *netnstest.NS, backend string, id, core int, open relaysock.Opener) *workerProc {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	mustNoErr(t, err)
	ctl, child := os.NewFile(uintptr(sp[0]), "ctl"), os.NewFile(uintptr(sp[1]), "ctl-child")
	statsR, statsW, err := os.Pipe()
	mustNoErr(t, err)
	logR, logW, err := os.Pipe()
	mustNoErr(t, err)

	w := &workerProc{t: t, ctl: ctl, done: make(chan error, 1), rules: map[string]stats.RuleCounters{}}
	w.cmd = ns.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), "MCR_TEST_ROLE=worker", "MCR_TEST_BACKEND="+backend,
		"MCR_TEST_ID="+strconv.Itoa(id), "MCR_TEST_CORE="+strconv.Itoa(core))
	sock := serveSockets(t, ns, open)
	w.cmd.ExtraFiles = []*os.File{child, statsW, logW, sock}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	mustNoErr(t, w.cmd.Start())
	child.Close()
	statsW.Close()
	logW.Close()
	sock.Close()
	go func() { w.done <- w.cmd.Wait() }()
	go w.readStats(statsR)
	go w.readLogs(logR)
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		ctl.Close()
		if t.Failed() {
			t.Logf("worker %d output: %s\nlogs:\n%s", id, w.out.String(), strings.Join(w.logLines(), "\n"))
		}
	})
	return w
}

// serveSockets opens, in ns, every socket a worker asks for on the returned
// end of a socket socketpair with open, as the supervisor does (without
// its policy), until the worker closes its end; then it closes its own.
func serveSockets(t *testing.T, ns *netnstest.NS, open relaysock.Opener) *os.File {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	mustNoErr(t, err)
	sup := os.NewFile(uintptr(sp[0]), "sockets")
	c, err := net.FileConn(sup)
	sup.Close()
	mustNoErr(t, err)
	conn := c.(*net.UnixConn)
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error { return relaysock.Serve(conn, open, nil) })
		conn.Close()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return os.NewFile(uintptr(sp[1]), "sockets-child")
}

// heldInputs keeps the ingress sockets of every input the workers of a
// test ask for as the supervisor does: one relaysock.IngressGroup per
// input with a member per slot, opened on the first request and kept
// until the test ends, each worker getting a duplicate of its slot's.
type heldInputs struct {
	t     *testing.T
	cores []int // by slot
	mode  relaysock.Fanout
	mu    sync.Mutex
	group map[[2]int]*relaysock.IngressGroup
}

func newHeldInputs(t *testing.T, mode relaysock.Fanout, cores ...int) *heldInputs {
	h := &heldInputs{t: t, cores: cores, mode: mode, group: map[[2]int]*relaysock.IngressGroup{}}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, g := range h.group {
			g.Close()
		}
	})
	return h
}

// opener returns the Opener of slot's workers. It runs in the namespace
// of serveSockets.
func (h *heldInputs) opener(slot int) relaysock.Opener {
	return func(req relaysock.Request) (int, error) {
		in := req.Ingress
		if in == nil {
			return relaysock.Open(req)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		k := [2]int{in.IfIndex, in.FanoutID}
		g := h.group[k]
		if g == nil {
			var err error
			if g, err = relaysock.OpenIngressGroup(in.IfIndex, in.FanoutID, h.mode, h.cores, in.Filter, in.Ring); err != nil {
				return -1, err
			}
			h.group[k] = g
		}
		return g.Dup(slot, in.Filter)
	}
}

func (w *workerProc) readStats(r io.ReadCloser) {
	defer r.Close()
	fr := controlproto.NewFrameReader(r)
	for {
		body, err := fr.Next()
		if err != nil {
			return
		}
		var s stats.Snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			w.t.Errorf("stats frame does not decode: %v", err)
			return
		}
		w.mu.Lock()
		w.last = s
		w.seen++
		for _, rc := range s.Rules {
			w.rules[rc.ID] = rc
		}
		w.mu.Unlock()
	}
}

func (w *workerProc) readLogs(r io.ReadCloser) {
	defer r.Close()
	buf := make([]byte, 64<<10)
	var rest []byte
	for {
		n, err := r.Read(buf)
		rest = append(rest, buf[:n]...)
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			w.mu.Lock()
			w.logs = append(w.logs, string(rest[:i]))
			w.mu.Unlock()
			rest = rest[i+1:]
		}
		if err != nil {
			return
		}
	}
}

func (w *workerProc) logLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.logs...)
}

// snapshot returns the latest snapshot and the latest counters of rule id.
func (w *workerProc) snapshot(id string) (stats.Snapshot, stats.RuleCounters) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.rules[id]
}

// waitStats waits until cond holds for the latest snapshot and the counters
// of rule id.
func (w *workerProc) waitStats(msg, id string, cond func(stats.Snapshot, stats.RuleCounters) bool) {
	w.t.Helper()
	netnstest.WaitFor(w.t, 10*time.Second, msg, func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			w.t.Fatalf("worker exited (%v) while waiting for %s", err, msg)
		default:
		}
		return cond(w.snapshot(id))
	})
}

// kill kills the worker with SIGKILL and waits for it to exit.
func (w *workerProc) kill() {
	w.t.Helper()
	mustNoErr(w.t, w.cmd.Process.Kill())
	err := <-w.done
	w.done <- err
}

// send writes commands to the worker.
func (w *workerProc) send(cmds ...controlproto.WorkerCommand) {
	w.t.Helper()
	for _, c := range cmds {
		mustNoErr(w.t, controlproto.WriteFrame(w.ctl, c))
	}
}

// sync replaces the worker's ruleset and waits until it reports the new
// hash, so its sockets and filters are in place.
func (w *workerProc) sync(rules []controlproto.WorkerRule) {
	w.t.Helper()
	cmds, err := controlproto.SyncCommands(rules, 0)
	mustNoErr(w.t, err)
	w.send(cmds...)
	want := controlproto.HashWorkerRules(rules)
	w.waitStats("ruleset hash "+want, "", func(s stats.Snapshot, _ stats.RuleCounters) bool {
		return s.RulesetHash == want
	})
}

// topo is the test network: a source namespace, the relay namespace and
// two sinks.
//
//	src s0 ── r0 relay r1 ── k1 sink1
//	                   r2 ── k2 sink2
type topo struct {
	src, relay, sink1, sink2 *netnstest.NS
	ifindex                  map[string]int
}

func newTopo(t *testing.T) *topo {
	tp := &topo{
		src:     netnstest.New(t, "src"),
		relay:   netnstest.New(t, "rly"),
		sink1:   netnstest.New(t, "k1"),
		sink2:   netnstest.New(t, "k2"),
		ifindex: map[string]int{},
	}
	netnstest.Veth(t, tp.src, "s0", []string{"10.0.1.1/24", "10.0.1.3/24", "fd01::1/64"},
		tp.relay, "r0", []string{"10.0.1.2/24", "fd01::2/64"})
	netnstest.Veth(t, tp.relay, "r1", []string{"10.0.2.1/24", "fd02::1/64"},
		tp.sink1, "k1", []string{"10.0.2.2/24", "fd02::2/64"})
	netnstest.Veth(t, tp.relay, "r2", []string{"10.0.3.1/24", "fd03::1/64"},
		tp.sink2, "k2", []string{"10.0.3.2/24", "fd03::2/64"})
	for _, l := range []struct {
		ns *netnstest.NS
		If string
	}{{tp.src, "s0"}, {tp.relay, "r0"}, {tp.relay, "r1"}, {tp.sink1, "k1"}} {
		l.ns.MustRun("ip", "link", "set", "dev", l.If, "mtu", "9000")
	}
	for _, name := range []string{"r0", "r1", "r2"} {
		tp.ifindex[name] = tp.relay.IfIndex(name)
	}
	return tp
}

// rule builds a WorkerRule for the relay namespace. in and each output are
// "GROUP:PORT@IF[ from SOURCE]"; an interface the topology lacks resolves to
// ifindex 0.
func (tp *topo) rule(id, in string, outs ...string) controlproto.WorkerRule {
	hp, rest, _ := strings.Cut(in, "@")
	ifname, src, _ := strings.Cut(rest, " from ")
	group, port := splitHostPort(hp)
	wr := controlproto.WorkerRule{
		Rule:         ruleset.Rule{ID: id, Input: ruleset.Input{Interface: ifname, Group: group, Port: port, Source: src}},
		InputIfIndex: tp.ifindex[ifname],
		FanoutID:     1000 + tp.ifindex[ifname],
	}
	for _, o := range outs {
		hp, rest, _ := strings.Cut(o, "@")
		ifname, src, _ := strings.Cut(rest, " from ")
		group, port := splitHostPort(hp)
		wr.Outputs = append(wr.Outputs, ruleset.Output{Interface: ifname, Group: group, Port: port, Source: src})
		wr.OutputIfIndex = append(wr.OutputIfIndex, tp.ifindex[ifname])
	}
	return wr
}

// Payloads carry a stream id, a sequence number and their own length, and
// are filled with a pattern derived from them, so a sink can check every
// byte.
const payloadHeader = 12

func payload(stream, seq uint32, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint32(p, stream)
	binary.BigEndian.PutUint32(p[4:], seq)
	binary.BigEndian.PutUint32(p[8:], uint32(size))
	for i := payloadHeader; i < size; i++ {
		p[i] = byte(uint32(i)*31 + seq*7 + stream)
	}
	return p
}

// sink receives datagrams in a namespace and checks them.
type sink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[uint32]map[uint32]int // stream → seq → times received
	from map[netip.AddrPort]int    // source → datagrams received
	bad  []string
	// last is the highest seq received of each stream, late counts the
	// datagrams of each that arrived after a higher seq.
	last map[uint32]uint32
	late map[uint32]int
}

// newSink listens on addr (joining it on ifname when it is a group) inside
// ns with a large receive buffer.
func newSink(t *testing.T, ns *netnstest.NS, ifname, addr string) *sink {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	s := &sink{got: map[uint32]map[uint32]int{}, from: map[netip.AddrPort]int{}}
	err := ns.Do(func() error {
		network := "udp4"
		if ap.Addr().Is6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		s.conn = c
		if err := setRcvBuf(c, 8<<20); err != nil {
			return err
		}
		if !ap.Addr().IsMulticast() {
			return nil
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		group := &net.UDPAddr{IP: ap.Addr().AsSlice()}
		if ap.Addr().Is4() {
			return ipv4.NewPacketConn(c).JoinGroup(ifi, group)
		}
		return ipv6.NewPacketConn(c).JoinGroup(ifi, group)
	})
	mustNoErr(t, err)
	t.Cleanup(func() { s.conn.Close() })
	go s.read()
	return s
}

func setRcvBuf(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	})
	return errors.Join(err, serr)
}

func (s *sink) read() {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.from[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]++
		s.mu.Unlock()
		s.check(buf[:n])
	}
}

func (s *sink) check(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(p) < payloadHeader {
		s.bad = append(s.bad, fmt.Sprintf("short datagram of %d bytes", len(p)))
		return
	}
	stream, seq := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
	if want := payload(stream, seq, int(binary.BigEndian.Uint32(p[8:]))); !bytes.Equal(p, want) {
		s.bad = append(s.bad, fmt.Sprintf("stream %d seq %d: %d bytes differ from what was sent", stream, seq, len(p)))
		return
	}
	if s.last == nil {
		s.last, s.late = map[uint32]uint32{}, map[uint32]int{}
	}
	if s.got[stream] == nil {
		s.got[stream] = map[uint32]int{}
	} else if seq < s.last[stream] {
		s.late[stream]++
	}
	s.last[stream] = max(s.last[stream], seq)
	s.got[stream][seq]++
}

// sources returns how many datagrams came from each source.
func (s *sink) sources() map[netip.AddrPort]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.from)
}

// result is what a sink received of one stream.
type result struct {
	Received, Distinct, Duplicates, Reordered int
	Bad                                       []string
}

func (s *sink) result(stream uint32) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := result{Bad: s.bad, Reordered: s.late[stream]}
	for _, n := range s.got[stream] {
		r.Received += n
		r.Distinct++
		r.Duplicates += n - 1
	}
	return r
}

// expect waits until the sink received n datagrams of stream, then checks
// that they are n distinct, intact ones, in the order they were sent.
func (s *sink) expect(t *testing.T, stream uint32, n int) {
	t.Helper()
	if got, want := s.wait(t, stream, n), (result{Received: n, Distinct: n}); !equalResult(got, want) {
		t.Errorf("stream %d: got %+v, want %+v", stream, got, want)
	}
}

// expectUnordered is expect for a stream the relay may reorder.
func (s *sink) expectUnordered(t *testing.T, stream uint32, n int) {
	t.Helper()
	got := s.wait(t, stream, n)
	if got.Reordered = 0; !equalResult(got, result{Received: n, Distinct: n}) {
		t.Errorf("stream %d: got %+v, want %d distinct datagrams", stream, got, n)
	}
}

// wait waits until the sink received n datagrams of stream and returns
// what it received.
func (s *sink) wait(t *testing.T, stream uint32, n int) result {
	t.Helper()
	netnstest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d datagrams of stream %d", n, stream), func() bool {
		return s.result(stream).Received >= n
	})
	return s.result(stream)
}

func equalResult(a, b result) bool {
	return a.Received == b.Received && a.Distinct == b.Distinct && a.Duplicates == b.Duplicates &&
		a.Reordered == b.Reordered && len(a.Bad) == len(b.Bad)
}

// source sends UDP datagrams from a namespace.
type source struct {
	ns     *netnstest.NS
	ifname string
	src    netip.Addr
}

// send sends count payloads of size bytes of stream to dst at pps packets
// per second (0: as fast as possible).
func (s source) send(t *testing.T, dst string, id uint32, count, size, pps int) {
	t.Helper()
	s.sendStream(t, dst, stream{id: id, count: count, size: fixedSize(size), pps: pps})
}

// sendStream sends st to dst.
func (s source) sendStream(t *testing.T, dst string, st stream) {
	t.Helper()
	mustNoErr(t, s.ns.Do(func() error { return sendStream(s.ifname, s.src, dst, st) }))
}

// stream is what sendStream sends: count payloads of stream id, payload
// seq being size(seq) bytes, at pps packets per second (0: as fast as
// possible), in bursts of burst back-to-back packets (0 or 1: evenly),
// moving between the CPUs of hop (if any) every hopEvery datagrams: veth
// hands a datagram to the receiving side on the CPU that sent it.
type stream struct {
	id         uint32
	count      int
	size       func(seq int) int
	pps, burst int
	hop        []int
}

// hopEvery is how many datagrams a hopping stream sends on one CPU.
const hopEvery = 50

func fixedSize(n int) func(int) int { return func(int) int { return n } }

// senderTTL is the TTL or hop limit of the test senders' multicast: the
// relay sends transparent outputs with one less.
const senderTTL = 8

// senderConn opens a UDP socket bound to src in the calling thread's
// namespace that sends to multicast ap out of ifname, with TTL or hop
// limit senderTTL.
func senderConn(ifname string, src netip.Addr, ap netip.AddrPort) (*net.UDPConn, error) {
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil || !ap.Addr().IsMulticast() {
		return c, err
	}
	ifi, err := net.InterfaceByName(ifname)
	if err == nil {
		if ap.Addr().Is4() {
			pc := ipv4.NewPacketConn(c)
			err = errors.Join(pc.SetMulticastInterface(ifi), pc.SetMulticastTTL(senderTTL))
		} else {
			pc := ipv6.NewPacketConn(c)
			err = errors.Join(pc.SetMulticastInterface(ifi), pc.SetMulticastHopLimit(senderTTL))
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendStream sends a stream from the calling thread's namespace, pacing
// from the clock.
func sendStream(ifname string, src netip.Addr, dst string, st stream) error {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil {
		return err
	}
	c, err := senderConn(ifname, src, ap)
	if err != nil {
		return err
	}
	defer c.Close()
	if len(st.hop) > 0 {
		// The caller runs on a locked thread (netnstest.NS.Do), which
		// goes back to the runtime with the CPUs it came with.
		var orig unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			return err
		}
		defer func() { _ = unix.SchedSetaffinity(0, &orig) }()
	}
	burst := max(st.burst, 1)
	start := time.Now()
	for seq := 0; seq < st.count; seq++ {
		if len(st.hop) > 0 && seq%hopEvery == 0 {
			var set unix.CPUSet
			set.Set(st.hop[seq/hopEvery%len(st.hop)])
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return fmt.Errorf("move the sender: %w", err)
			}
		}
		if st.pps > 0 && seq%burst == 0 {
			due := time.Duration(seq) * time.Second / time.Duration(st.pps)
			if d := due - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
		if _, err := c.WriteToUDPAddrPort(payload(st.id, uint32(seq), st.size(seq)), ap); err != nil {
			return fmt.Errorf("send %d of stream %d: %w", seq, st.id, err)
		}
	}
	return nil
}

// inject sends raw IP packets out of ifname in ns with an AF_PACKET socket,
// to the Ethernet multicast address of each packet's destination.
func inject(t *testing.T, ns *netnstest.NS, ifname string, pkts ...[]byte) {
	t.Helper()
	mustNoErr(t, ns.Do(func() error { return packettest.Inject(ifname, pkts...) }))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
