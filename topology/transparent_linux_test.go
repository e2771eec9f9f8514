package topology

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestTransparentOutputs relays IPv4 and IPv6 streams to outputs that keep
// the original source: the receiver gets every payload intact from the
// sender's address and port, and tcpdump on its link sees correct IP and
// UDP checksums and the sender's TTL less one.
func TestTransparentOutputs(t *testing.T) {
	t.Parallel()
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed: apt-get install tcpdump")
	}
	for _, tc := range []struct {
		name, in, out, src string
		hdr                *regexp.Regexp // tcpdump -vv: the IP header line, TTL or hop limit in group 1
	}{
		{"IPv4", "239.1.1.1", "239.2.2.2", "10.1.0.1", regexp.MustCompile(`^\S+ IP \(tos 0x0, ttl (\d+),`)},
		{"IPv6", "ff3e::1", "ff3e::2", "fd00:1::1", regexp.MustCompile(`^\S+ IP6 \(.*hlim (\d+), next-header UDP`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLine(t)
			d := startDaemon(t, l.relay, daemonOptions{})
			o := out(tc.out, 6000, outIf)
			o.PreserveSource = true
			d.add(rule("transparent", inIf, tc.in, 5000, o))
			d.waitReady()

			s := newStream(srcIf, tc.in, 5000)
			s.Count, s.Rate, s.TTL = 500, 5000, 8
			dump := netnstest.Start(t, l.sink, tcpdump, "-i", sinkIf, "-n", "-vv", "-l",
				"-c", strconv.FormatUint(s.Count, 10), "udp", "and", "dst", "port", "6000")
			waitFor(t, 5*time.Second, "tcpdump to listen", func() bool {
				return strings.Contains(dump.Output(), "listening on")
			})
			rc := startRecv(t, l.sink, sinkIf, tc.out, 6000, s.Count)
			sent := send(t, l.src, s)
			got := rc.result()
			checkDelivered(t, "the receiver", got, s.Count, s.Size)
			want := fmt.Sprintf("%s:%d", tc.src, sent.SourcePort)
			if strings.Contains(tc.src, ":") {
				want = fmt.Sprintf("[%s]:%d", tc.src, sent.SourcePort)
			}
			if len(got.Sources) != 1 || got.Sources[want] != s.Count {
				t.Errorf("the receiver got datagrams from %v, want all %d from the sender, %s", got.Sources, s.Count, want)
			}

			if err := dump.Wait(10 * time.Second); err != nil {
				t.Fatalf("tcpdump: %v\n%s", err, dump.Output())
			}
			checkDump(t, dump.Output(), tc.hdr, fmt.Sprintf("%s.%d > %s.6000: [udp sum ok]", tc.src, sent.SourcePort, tc.out),
				s.TTL-1, int(s.Count))
		})
	}
}

// checkDump checks n datagrams in the output of tcpdump -vv: each has a
// header line that hdr matches, with TTL or hop limit ttl, followed by one
// that contains addrs, and tcpdump found no bad checksum.
func checkDump(t *testing.T, out string, hdr *regexp.Regexp, addrs string, ttl, n int) {
	t.Helper()
	if strings.Contains(out, "bad") || strings.Contains(out, "incorrect") {
		t.Errorf("tcpdump saw a bad checksum:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	datagrams := 0
	for i, line := range lines {
		m := hdr.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		datagrams++
		if m[1] != strconv.Itoa(ttl) {
			t.Errorf("TTL or hop limit %s, want %d (the sender's less one): %s", m[1], ttl, line)
			return
		}
		// IPv4 puts the addresses on the next line, IPv6 on the same.
		if !strings.Contains(line, addrs) && (i+1 == len(lines) || !strings.Contains(lines[i+1], addrs)) {
			t.Errorf("datagram not from the sender with a good UDP checksum, want %q:\n%s\n%s", addrs, line, lines[min(i+1, len(lines)-1)])
			return
		}
	}
	if datagrams != n {
		t.Errorf("tcpdump showed %d datagrams, want %d:\n%s", datagrams, n, out)
	}
}

// TestTransparentRefusedWithoutRaw runs mcrd without CAP_NET_RAW: it
// refuses a rule with a transparent output and says why, and serves the
// others.
func TestTransparentRefusedWithoutRaw(t *testing.T) {
	t.Parallel()
	capsh, err := exec.LookPath("capsh")
	if err != nil {
		t.Skip("capsh is not installed: apt-get install libcap2-bin")
	}
	l := newLine(t)
	d := startDaemon(t, l.relay, daemonOptions{Wrap: []string{capsh, "--drop=cap_net_raw", "--", "-c", `exec "$0" "$@"`}})
	o := out("239.2.2.2", 6000, outIf)
	o.PreserveSource = true
	_, err = d.ctl(addArgs(rule("transparent", inIf, "239.1.1.1", 5000, o))...)
	want := "mcrctl: invalid_argument: outputs[0].preserve_source: this mcrd cannot send transparent IPv4 outputs: " +
		"open raw IPv4 socket: operation not permitted (mcrd needs CAP_NET_RAW)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("add of a transparent output without CAP_NET_RAW: %v, want %q", err, want)
	}
	if _, err := d.ctl(addArgs(rule("plain", inIf, "239.1.1.1", 5000, out("239.2.2.2", 6000, outIf)))...); err != nil {
		t.Errorf("add of a plain output: %v", err)
	}
}
