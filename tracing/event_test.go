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
