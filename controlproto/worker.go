package controlproto

import (
	"github.com/mcrelay/mcr/ruleset"
)

// The fds a worker process inherits, by position (exec.Cmd.ExtraFiles[i] is
// fd 3+i).
const (
	// CommandFD is the worker's end of the command socketpair
	// (AF_UNIX SOCK_STREAM): supervisor → worker frames.
	CommandFD = 3
	// StatsFD is the write end of the stats pipe: worker → supervisor frames.
	StatsFD = 4
	// LogFD is the write end of the log pipe: JSON log lines.
	LogFD = 5
	// SocketFD is the worker's end of the socket socketpair (AF_UNIX
	// SOCK_STREAM): the worker asks for every socket it relays on and
	// the supervisor opens it and passes it with SCM_RIGHTS
	// (internal/relaysock).
	SocketFD = 6
)

// MaxFrameSize is the largest worker-protocol frame body.
const MaxFrameSize = 16 << 20

// Worker command types (WorkerCommand.Type).
const (
	WAddRule    = "AddRule"
	WRemoveRule = "RemoveRule"
	WSyncRules  = "SyncRules"
	WShutdown   = "Shutdown"
)

// WorkerRule is a rule as the data plane needs it: the rule plus what the
// supervisor resolved for it. Interface indexes come from the supervisor's
// netlink view, so an interface recreated under the same name changes the
// WorkerRule (and the ruleset hash) and is re-sent.
type WorkerRule struct {
	ruleset.Rule
	// InputIfIndex is the ifindex of Rule.Input.Interface.
	InputIfIndex int `json:"input_ifindex"`
	// FanoutID is the PACKET_FANOUT group id every worker uses for the
	// input interface; unique per daemon instance and interface, never 0.
	FanoutID int `json:"fanout_id"`
	// OutputIfIndex[i] is the ifindex of Rule.Outputs[i].Interface, 0 when
	// it does not exist (the worker reports an error for that output).
	OutputIfIndex []int `json:"output_ifindex"`
	// OutputAddrs[i] are the addresses (canonical text) Outputs[i]'s
	// datagrams may leave from when it names no source: those of its
	// interface, of the destination's family, as the supervisor's netlink
	// view has them (the kernel picks one per destination). With the port of the output's
	// egress socket they are its egress identity, which the worker
	// recognises in datagrams that come back to an input (a relay loop).
	// Empty for outputs with a source (the source is the address) and for
	// transparent ones (they keep the input's). Absent: none known.
	OutputAddrs [][]string `json:"output_addrs,omitempty"`
	// OutputIdle[i] is true when Outputs[i] follows its receivers
	// (when_joined) and the output interface has no listener for it: the
	// worker keeps its socket but sends nothing, and counts nothing as
	// dropped. Absent: every output sends.
	OutputIdle []bool `json:"output_idle,omitempty"`
}

// WorkerCommand is one supervisor → worker frame.
//
//	AddRule:    Rule
//	RemoveRule: ID
//	SyncRules:  Rules, Hash, Part, Parts — the complete ruleset, split into
//	            Parts frames numbered Part = 0..Parts-1; the worker replaces
//	            its ruleset when the last part arrives. Hash is the hash of
//	            the complete set (HashWorkerRules).
//	Shutdown:   nothing
type WorkerCommand struct {
	Type  string       `json:"type"`
	Rule  *WorkerRule  `json:"rule,omitempty"`
	ID    string       `json:"id,omitempty"`
	Rules []WorkerRule `json:"rules,omitempty"`
	Hash  string       `json:"hash,omitempty"`
	Part  int          `json:"part,omitempty"`
	Parts int          `json:"parts,omitempty"`
	// Traces is the complete set of traced rules (WTrace).
	Traces []WorkerTrace `json:"traces,omitempty"`
}
