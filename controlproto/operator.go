package controlproto

import (
	"encoding/json"

	"github.com/mcrelay/mcr/ruleset"
)

// ProtocolVersion is the version of the operator and worker protocols.
// It changes when a message changes incompatibly.
const ProtocolVersion = 1

// MaxRequestSize is the longest operator request line, newline excluded.
const MaxRequestSize = 1 << 20

// Operator commands (Request.Command).
const (
	CmdPing        = "Ping"
	CmdGetVersion  = "GetVersion"
	CmdAddRule     = "AddRule"
	CmdRemoveRule  = "RemoveRule"
	CmdListRules   = "ListRules"
	CmdGetStats    = "GetStats"
	CmdListWorkers = "ListWorkers"
	CmdGetConfig   = "GetConfig"
	CmdLoadConfig  = "LoadConfig"
	CmdSaveConfig  = "SaveConfig"
	CmdCheckConfig = "CheckConfig"
	CmdGetLogLevel = "GetLogLevel"
	CmdSetLogLevel = "SetLogLevel"
	CmdListGroups  = "ListGroups"
)

// Error codes (Error.Code).
const (
	CodeInvalidArgument = "invalid_argument"
	CodeNotFound        = "not_found"
	CodeAlreadyExists   = "already_exists"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
	// CodeNotSaved: the change was made and is in effect, but writing it
	// to --config failed, so the daemon would start without it.
	CodeNotSaved = "not_saved"
)

// Rule states (RuleStatus.State, of the input interface) and output states
// (RuleStatus.OutputStates, of each output's interface).
const (
	StateActive  = "active"  // interface present and up
	StatePending = "pending" // interface does not exist (yet)
	StateDown    = "down"    // interface exists but is down
	// StateIdle is an output's only: it follows its receivers
	// (when_joined), its interface is up, and no listener wants it.
	StateIdle = "idle"
)

// Request is one operator request. Which fields apply depends on Command:
// AddRule takes Rule; RemoveRule takes ID; LoadConfig and CheckConfig take
// Path or Config; SaveConfig takes an optional Path; SetLogLevel takes Level.
type Request struct {
	Command string          `json:"command"`
	Rule    *ruleset.Rule   `json:"rule,omitempty"`
	ID      string          `json:"id,omitempty"`
	Path    string          `json:"path,omitempty"`
	Config  *ruleset.Config `json:"config,omitempty"`
	Level   string          `json:"level,omitempty"`
	// Limit and Snaplen are EnableTrace's, Since GetTrace's.
	Limit   int    `json:"limit,omitempty"`
	Snaplen int    `json:"snaplen,omitempty"`
	Since   uint64 `json:"since,omitempty"`
	// Conn identifies the control connection the request came on (set by
	// the daemon, never decoded): traces end with their connection.
	Conn uint64 `json:"-"`
	// Interface narrows ListGroups to one interface.
	Interface string `json:"interface,omitempty"`
}

// Response is the reply to one request: OK with a Result, or an Error.
type Response struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Error is a failed request: a stable Code for programs and a Message for
// people. It implements error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// VersionResult is the GetVersion result.
type VersionResult struct {
	Protocol int    `json:"protocol"`
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Go       string `json:"go"`
}

// IDResult is the AddRule and RemoveRule result.
type IDResult struct {
	ID string `json:"id"`
}

// RuleStatus is one entry of the ListRules result: the rule as docs/rules.md
// describes it (normalised, with its id filled in) plus its state.
type RuleStatus struct {
	ruleset.Rule
	State string `json:"state"`
	// OutputStates[i] is the state of Outputs[i]'s interface. A rule is
	// active whatever its outputs' states: the outputs that can send do.
	OutputStates []string `json:"output_states,omitempty"`
	// OutputErrors[i], when set, says why the workers cannot send to
	// Outputs[i] (as GetStats' outputs[i].error); such an output is
	// failing, whatever its interface's state. Omitted when every output
	// sends.
	OutputErrors []string `json:"output_errors,omitempty"`
	// Error, when set, says what is wrong with the rule right now (a failed
	// group join, an input or output the workers cannot serve); it
	// includes the text of GetStats' error for the rule.
	Error string `json:"error,omitempty"`
}

// WorkerInfo is one entry of the ListWorkers result.
type WorkerInfo struct {
	Worker      int     `json:"worker"`
	PID         int     `json:"pid"`
	Core        int     `json:"core"`
	State       string  `json:"state"` // "starting", "running", "backoff", "stopped"
	Restarts    int     `json:"restarts"`
	UptimeS     float64 `json:"uptime_s"`
	RulesetHash string  `json:"ruleset_hash"`
	InSync      bool    `json:"in_sync"`
	// Resyncs counts the SyncRules the supervisor sent because the worker's
	// hash did not match.
	Resyncs int    `json:"resyncs"`
	Backend string `json:"backend,omitempty"`
}

// LoadConfigResult is the LoadConfig result: what the diff did.
type LoadConfigResult struct {
	Added     int `json:"added"`
	Removed   int `json:"removed"`
	Unchanged int `json:"unchanged"`
}

// SaveConfigResult is the SaveConfig result.
type SaveConfigResult struct {
	Path  string `json:"path"`
	Rules int    `json:"rules"`
}

// CheckConfigResult is the CheckConfig result for a valid config.
type CheckConfigResult struct {
	Rules int `json:"rules"`
}

// LogLevelResult is the GetLogLevel and SetLogLevel result.
type LogLevelResult struct {
	Level string `json:"level"`
}
