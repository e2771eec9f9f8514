package netnstest

import (
	"errors"
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it returns true or timeout passes,
// then fails the test with "timed out after TIMEOUT: waiting for MSG".
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	Poll(t, timeout, 10*time.Millisecond, msg, cond)
}

// Poll is WaitFor checking every interval: for conditions that cost a
// process start each, where polling every 10 ms would load the machine.
func Poll(t testing.TB, timeout, every time.Duration, msg string, cond func() bool) {
	t.Helper()
	errWaiting := errors.New("waiting for " + msg)
	PollErr(t, timeout, every, func() error {
		if cond() {
			return nil
		}
		return errWaiting
	})
}

// PollErr calls check every interval until it returns nil or timeout
// passes, then fails the test with check's last error: for conditions
// whose failure is best explained by what was seen last (a diff of
// counters, the datagrams read so far). check runs on the test's
// goroutine, so it may call t.Fatal itself. An interval of 0 suits a check
// that blocks for a while on its own (a read with a timeout).
//
// It is the one deadline loop of mcr's tests: a test that waits for
// something polls with it instead of sleeping and hoping.
func PollErr(t testing.TB, timeout, every time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}
