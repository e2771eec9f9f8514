// Package mcrctl provides the mcrctl command line (docs/cli.md): the
// operator's client of mcrd's control socket (docs/control-protocol.md),
// built as a cobra command tree that runs in-process through Main, so tests
// drive it like a user would.
//
// Requests go over controlproto.Client, one connection per run. Output is a
// human table by default (states coloured only on a terminal, honouring
// NO_COLOR), or with --json the daemon's result exactly as it sent it, one
// JSON document per line. ParseOutputs, the parser of `add --outputs`, is
// exported for programs that take outputs in the same notation.
//
// Exit status: 0 success; 1 the daemon answered with an error (its code and
// message go to stderr) or output failed; 2 usage error (unknown command or
// flag, bad --outputs); 3 the daemon cannot be reached (no socket, nothing
// listening, no reply within --timeout); 130 interrupted by Ctrl-C during a
// request. `stats --watch` ends on Ctrl-C with status 0.
package mcrctl
