package mcrctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcrelay/mcr/tracing"
)

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 30, 0, 123456000, time.Local).UnixNano()
	zero, one := 0, 1
	tests := []struct {
		name string
		e    tracing.Event
		want string
	}{
		{"received", tracing.Event{UnixNano: at, Kind: tracing.Received, Source: "10.1.0.1:40000", Destination: "239.1.1.1:5000", Size: 1000},
			"10:30:00.123456 w0 received 10.1.0.1:40000 > 239.1.1.1:5000 1000 B"},
		{"sent in a GSO send", tracing.Event{UnixNano: at, Worker: 1, Kind: tracing.Sent, Output: &zero, Source: ":38349", Destination: "239.2.2.2:6000", Size: 1000, Segment: 3, Segments: 8},
			"10:30:00.123456 w1 sent out 0 :38349 > 239.2.2.2:6000 1000 B GSO 3/8"},
		{"output down", tracing.Event{UnixNano: at, Kind: tracing.Dropped, Reason: tracing.OutputDown, Output: &one, Destination: "239.3.3.3:6000", Errno: 100, Error: "network is down"},
			"10:30:00.123456 w0 dropped out 1 output_down > 239.3.3.3:6000 (network is down)"},
		{"ring full", tracing.Event{UnixNano: at, Kind: tracing.Dropped, Reason: tracing.RingFull, Count: 12},
			"10:30:00.123456 w0 dropped ring_full ×12"},
		{"wrong port", tracing.Event{UnixNano: at, Kind: tracing.Unmatched, Reason: tracing.WrongPort, Source: "10.1.0.1:40000", Destination: "239.1.1.1:5001", Size: 1000},
			"10:30:00.123456 w0 unmatched wrong_port 10.1.0.1:40000 > 239.1.1.1:5001 1000 B"},
		{"not sent: no listener", tracing.Event{UnixNano: at, Kind: tracing.NotSent, Reason: tracing.Idle, Output: &one, Destination: "239.3.3.3:6000", Size: 1000},
			"10:30:00.123456 w0 not_sent out 1 idle > 239.3.3.3:6000 1000 B"},
	}
	for _, tt := range tests {
		if got := formatEvent(tt.e); got != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

const traceReply = `{"ok":true,"result":{"id":"r","enabled":true,"limit":1000,"next":2,"lost":3,"events":[` +
	`{"seq":1,"unix_nano":1796639400123456000,"worker":0,"rule":"r","kind":"received","source":"10.1.0.1:40000","destination":"239.1.1.1:5000","size":5,"data":"aGVsbG8="},` +
	`{"seq":2,"unix_nano":1796639400123470000,"worker":0,"rule":"r","kind":"sent","source":":38349","destination":"239.2.2.2:6000","size":5,"output":0,"data":"aGVsbG8="}]}}`

func TestTraceCommand(t *testing.T) {
	d := newFakeDaemon(t, map[string]string{
		"EnableTrace":  `{"ok":true,"result":{"id":"r","enabled":true,"limit":1000,"next":0}}`,
		"GetTrace":     traceReply,
		"DisableTrace": `{"ok":true,"result":{"id":"r","enabled":false,"next":2}}`,
	})
	res := runCLI(t, d.path, runOpts{}, "trace", "r", "--count", "3", "--json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], `"kind":"sent"`) {
		t.Errorf("stdout: want 3 JSON events, got:\n%s", res.stdout)
	}
	if want := "mcrctl: 3 events lost"; !strings.Contains(res.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
	}
	reqs := d.requestLines()
	if first, last := reqs[0], reqs[len(reqs)-1]; first != `{"command":"EnableTrace","id":"r"}` || last != `{"command":"DisableTrace","id":"r"}` {
		t.Errorf("requests start with %s and end with %s; want EnableTrace and DisableTrace", first, last)
	}
	if reqs[1] != `{"command":"GetTrace","id":"r"}` || reqs[2] != `{"command":"GetTrace","id":"r","since":2}` {
		t.Errorf("GetTrace requests %s, %s: want since 0 then since the last next", reqs[1], reqs[2])
	}
}

func TestCaptureCommand(t *testing.T) {
	d := newFakeDaemon(t, map[string]string{
		"EnableTrace": `{"ok":true,"result":{"id":"r","enabled":true,"limit":1000,"next":0}}`,
		"GetTrace":    traceReply,
	})
	path := filepath.Join(t.TempDir(), "c.pcap")
	res := runCLI(t, d.path, runOpts{}, "capture", "r", "-w", path, "--count", "2")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if want := "mcrctl: 2 datagrams of rule r written to " + path + "\n"; !strings.HasPrefix(res.stderr, want) {
		t.Errorf("stderr = %q, want it to start with %q", res.stderr, want)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The header, then two records of 16 + 20 + 8 + 5 bytes; the sent
	// datagram's source address is 0.0.0.0.
	if len(b) != 24+2*49 || string(b[24+49+16+28:]) != "hello" || string(b[24+49+16+12:24+49+16+16]) != "\x00\x00\x00\x00" {
		t.Errorf("pcap file of %d bytes: % x", len(b), b)
	}
	if reqs := d.requestLines(); reqs[0] != `{"command":"EnableTrace","id":"r","limit":8192,"snaplen":2048}` {
		t.Errorf("first request %s", reqs[0])
	}

	for _, args := range [][]string{
		{"capture", "r"},
		{"capture", "r", "-w", path, "--input", "--output", "1"},
		{"capture", "r", "-w", path, "--snaplen", "0"},
	} {
		if res := runCLI(t, d.path, runOpts{}, args...); res.code != exitUsage {
			t.Errorf("%v: exit %d, want %d (usage)", args, res.code, exitUsage)
		}
	}
}
