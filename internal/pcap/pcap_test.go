package pcap

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTcpdumpReads writes datagrams of both families, whole and cut
// short, and checks what tcpdump reads back: addresses, lengths, times
// and, with -vv, the checksums it can verify.
func TestTcpdumpReads(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed: it is the reader this test checks against")
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 10, 30, 0, 123456789, time.UTC)
	for i, p := range []struct {
		src, dst string
		payload  []byte
		size     int
	}{
		{"10.1.0.1:40000", "239.1.1.1:5000", []byte("hello, relay"), 12},
		{"10.1.0.1:40000", "239.1.1.1:5000", bytes.Repeat([]byte{7}, 100), 1000},
		{"[fd00:1::1]:40000", "[ff3e::1]:5000", []byte("odd"), 3},
		{"0.0.0.0:38349", "239.2.2.2:6000", nil, 0},
	} {
		pkt, n := AppendUDP(nil, netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst), p.payload, p.size)
		if err := w.WritePacket(at.Add(time.Duration(i)*time.Second), pkt, n); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tcpdump, "-nn", "-vv", "-tt", "-r", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	var got []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "reading from file") {
			continue
		}
		got = append(got, strings.TrimSpace(line))
	}
	want := []string{
		"1796639400.123456 IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 40)",
		"10.1.0.1.40000 > 239.1.1.1.5000: [udp sum ok] UDP, length 12",
		"1796639401.123456 IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 1028)",
		"10.1.0.1.40000 > 239.1.1.1.5000: [no cksum] UDP, length 1000",
		"1796639402.123456 IP6 (hlim 64, next-header UDP (17) payload length: 11) fd00:1::1.40000 > ff3e::1.5000: [udp sum ok] UDP, length 3",
		"1796639403.123456 IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto UDP (17), length 28)",
		"0.0.0.0.38349 > 239.2.2.2.6000: [udp sum ok] UDP, length 0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tcpdump -r (-want +got):\n%s", diff)
	}
}
