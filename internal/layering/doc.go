// Package layering holds the test of the import rules between mcr's
// packages (layering_test.go) and no code: the supervisor and the worker
// meet only in the packages both sides use (controlproto, the socket broker
// internal/relaysock and the libraries below them), a package below never
// imports one above it, and the supervisor's parts never import the
// supervisor that wires them.
package layering
