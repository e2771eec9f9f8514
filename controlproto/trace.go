package controlproto

import "github.com/mcrelay/mcr/tracing"

// Trace commands (Request.Command): per-rule packet tracing, tied to the
// connection that enables it (docs/control-protocol.md).
const (
	CmdEnableTrace  = "EnableTrace"
	CmdDisableTrace = "DisableTrace"
	CmdGetTrace     = "GetTrace"
)

// Trace limits: the supervisor keeps up to Limit events per traced rule
// (DefaultTraceLimit when not given), and each event at most Snaplen
// payload bytes.
const (
	DefaultTraceLimit = 1000
	MaxTraceLimit     = 100000
	MaxTraceSnaplen   = 65535
	// MaxTraceBytes bounds Limit times Snaplen: a trace with a large
	// snaplen holds fewer events (its effective limit is reported).
	MaxTraceBytes = 16 << 20
	// MaxTracedRules bounds the rules traced at once: every worker
	// holds a ring of up to MaxTraceBytes for each.
	MaxTracedRules = 16
)

// WTrace is the worker command that sets which rules a worker traces
// (WorkerCommand.Traces, the complete set: rules not in it are not
// traced). The supervisor sends it whenever the set changes and after
// every SyncRules, so a restarted worker traces what its predecessor did.
const WTrace = "Trace"

// WorkerTrace is the trace of one rule as a worker keeps it: a ring of
// Limit events, each with up to Snaplen bytes of payload.
type WorkerTrace struct {
	ID      string `json:"id"`
	Limit   int    `json:"limit"`
	Snaplen int    `json:"snaplen,omitempty"`
}

// TraceResult is the result of EnableTrace, DisableTrace and GetTrace.
type TraceResult struct {
	ID string `json:"id"`
	// Enabled tells whether the rule is being traced (by any connection).
	Enabled bool `json:"enabled"`
	Limit   int  `json:"limit,omitempty"`
	Snaplen int  `json:"snaplen,omitempty"`
	// Next is the "since" that asks for only the events after these.
	Next uint64 `json:"next"`
	// Events are the events after "since" that the supervisor still
	// holds, oldest first (GetTrace only).
	Events []tracing.Event `json:"events,omitempty"`
	// Missed counts events after "since" that were already pushed out
	// of the supervisor's buffer of Limit events: the reader was slower
	// than the traffic.
	Missed uint64 `json:"missed,omitempty"`
	// Lost counts the events workers could not record since the trace
	// was enabled: their rings were full when the supervisor last read
	// them.
	Lost uint64 `json:"lost,omitempty"`
}
