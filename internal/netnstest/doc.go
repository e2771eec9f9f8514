// Package netnstest provides throwaway network namespaces, veth links and
// processes for mcr's privileged tests.
//
// Every namespace gets a name unique to the test process, veth ends are
// created directly inside their namespaces (so parallel test packages never
// see each other's links), and everything a test creates is removed by
// t.Cleanup, also when the test fails. Tests that need it call RequireRoot
// first; it skips with a clear message when not root.
//
// The package is Linux-only: it shells out to iproute2 (`ip`) and uses
// setns(2) on a locked OS thread.
package netnstest
