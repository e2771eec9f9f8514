package netnstest

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// fatalTB records the message of Fatalf and stops the poll with a panic
// the test recovers, as testing's Goexit would stop a test.
type fatalTB struct {
	testing.TB
	msg string
}

type fatal struct{}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatal{})
}

// run calls poll with a fatalTB and returns what it failed with, "" when
// it returned.
func run(poll func(t testing.TB)) (msg string) {
	f := &fatalTB{}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
			msg = f.msg
		}
	}()
	poll(f)
	return ""
}

func TestPoll(t *testing.T) {
	calls := 0
	if msg := run(func(tb testing.TB) {
		Poll(tb, time.Second, time.Millisecond, "three calls", func() bool { calls++; return calls == 3 })
	}); msg != "" || calls != 3 {
		t.Errorf("Poll of a condition true at the third call: failed %q after %d calls", msg, calls)
	}
	if msg, want := run(func(tb testing.TB) {
		Poll(tb, 20*time.Millisecond, time.Millisecond, "never", func() bool { return false })
	}), "timed out after 20ms: waiting for never"; msg != want {
		t.Errorf("Poll of a condition never true failed with %q, want %q", msg, want)
	}
	calls, last := 0, ""
	if msg := run(func(tb testing.TB) {
		PollErr(tb, 20*time.Millisecond, time.Millisecond, func() error {
			calls++
			last = fmt.Sprintf("%d datagrams read", calls)
			return errors.New(last)
		})
	}); msg != "timed out after 20ms: "+last {
		t.Errorf("PollErr failed with %q, want its check's last error %q", msg, last)
	}
}
