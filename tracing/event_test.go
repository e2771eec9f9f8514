package tracing

import (
	"encoding/json"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEventJSON(t *testing.T) {
	out := 1
	e := Event{Seq: 3, UnixNano: 5, Worker: 1, Rule: "r", Kind: Dropped, Reason: OutputDown, Errno: 100,
		Error: "network is down", Destination: "239.2.2.2:6000", Output: &out}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"seq":3,"unix_nano":5,"worker":1,"rule":"r","kind":"dropped","reason":"output_down","errno":100,"error":"network is down","destination":"239.2.2.2:6000","output":1}`
	if string(b) != want {
		t.Errorf("JSON\ngot  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"kind":"nope"}`, `{"kind":"sent","reason":"nope"}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
	if _, err := json.Marshal(Event{}); err == nil {
		t.Error("an event without a kind encoded")
	}
}

func TestSendReason(t *testing.T) {
	for errno, want := range map[syscall.Errno]Reason{
		0: NoSocket, syscall.ENETDOWN: OutputDown, syscall.ENETUNREACH: OutputDown, syscall.ENODEV: OutputDown,
		syscall.EAGAIN: EgressError, syscall.EPERM: EgressError,
	} {
		if got := SendReason(errno); got != want {
			t.Errorf("SendReason(%v) = %v, want %v", errno, got, want)
		}
	}
}

// TestNotSentJSON: an output's datagram not sent for want of listeners
// encodes as kind not_sent, reason idle, and decodes back.
func TestNotSentJSON(t *testing.T) {
	out := 1
	e := Event{UnixNano: 5, Rule: "r", Kind: NotSent, Reason: Idle, Destination: "239.3.3.3:6000", Size: 100, Output: &out}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"unix_nano":5,"worker":0,"rule":"r","kind":"not_sent","reason":"idle","destination":"239.3.3.3:6000","size":100,"output":1}`
	if string(b) != want {
		t.Errorf("JSON\ngot  %s\nwant %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || !cmp.Equal(e, back) {
		t.Errorf("round trip: %+v, %v; want %+v", back, err, e)
	}
}
