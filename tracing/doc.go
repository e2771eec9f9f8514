// Package tracing provides the packet trace events of mcr: what a worker
// saw happen to one datagram of a traced rule (received, sent to an
// output, dropped and why, or arrived on the rule's input and matched no
// rule), as workers report them to the supervisor and the supervisor to
// operators (GetTrace, mcrctl trace and capture).
//
// It records nothing itself: workers keep their own pre-allocated rings
// and build Events only when they report.
package tracing
