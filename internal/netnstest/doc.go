// Package netnstest provides throwaway network namespaces, veth links and
// processes for mcr's privileged tests.
//
// Every namespace gets a name unique to the test process, veth ends are
// created directly inside their namespaces (so parallel test packages never
// see each other's links), and everything a test creates is removed by
// t.Cleanup, also when the test fails. Tests that need it call RequireRoot
// first, and RequireTools for the commands they run; both skip with a
// clear message when what they need is missing.
//
// It also holds the one deadline loop of mcr's tests (Poll, WaitFor,
// PollErr): a test that waits for something polls with a deadline instead
// of sleeping and hoping. Those build on every OS; the namespace helpers
// are Linux-only: they shell out to iproute2 (`ip`) and use setns(2) on a
// locked OS thread.
package netnstest
