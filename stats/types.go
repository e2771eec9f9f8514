package stats

import "github.com/mcrelay/mcr/tracing"

// WorkerCounters are one worker's data-plane counters, cumulative since the
// worker started. Tools rely on the JSON names (docs/stats.md): they are the
// control protocol's (docs/control-protocol.md) and do not change.
type WorkerCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	// NoMatch counts well-formed UDP packets that matched no rule.
	NoMatch uint64 `json:"no_match"`
	// Malformed counts truncated packets, bad header lengths, bad IHL and
	// lying length fields.
	Malformed uint64 `json:"malformed"`
	// Fragments counts IPv4 and IPv6 fragments (never forwarded).
	Fragments uint64 `json:"fragments"`
	// NotUDP counts well-formed IP packets that are not UDP, and frames of
	// another link-layer protocol.
	NotUDP uint64 `json:"not_udp"`
	// VLANTagged counts frames that carried a VLAN tag (802.1Q or 802.1ad,
	// other than a priority tag of VLAN ID 0) on an input interface: they
	// belong to that VLAN's interface, and a rule on the input never
	// relays them.
	VLANTagged uint64 `json:"vlan_tagged"`
	// BadChecksum counts datagrams that matched a rule but whose UDP
	// checksum is wrong (or zero, over IPv6); they are not relayed.
	BadChecksum uint64 `json:"bad_checksum"`
	// KernelDrops accumulates PACKET_STATISTICS tp_drops of the worker's
	// AF_PACKET sockets (the kernel resets them on every read).
	KernelDrops uint64 `json:"kernel_drops"`
	// RingFull counts the times the kernel found an input's receive ring
	// full: freezes of a block ring (every block still the worker's), and
	// packets a frame ring had no free frame for. Each one drops packets,
	// counted in KernelDrops.
	RingFull uint64 `json:"ring_full"`
	// BufferExhausted counts packets dropped because no buffer was free.
	BufferExhausted uint64 `json:"buffer_exhausted"`
	// RestartUnconfirmed counts received packets a worker that died had
	// handled (marked so in its receive ring) without seeing their sends
	// through: the batch it was about to send, or sending. Sent or not, the
	// next worker of the slot, which counts them, cannot tell, and does not
	// send them again (a datagram is relayed at most once). An upper bound
	// of what the death lost, at most one batch per death.
	RestartUnconfirmed uint64 `json:"restart_unconfirmed"`
	// EgressErrors counts failed or dropped sends over all outputs.
	EgressErrors uint64 `json:"egress_errors"`
	// Loops counts datagrams that matched a rule but carried the source
	// address and port of one of the relay's own outputs: its output come
	// back to an input through the network (a loop), dropped.
	Loops uint64 `json:"loops"`
	// TTLExpired counts datagrams not sent to a transparent output
	// (preserve_source) because their TTL or hop limit was 1 or 0, once
	// per output: such an output forwards like a router.
	TTLExpired uint64 `json:"ttl_expired"`
	// GSOSends counts sends that carried several datagrams at once with
	// UDP generic segmentation offload (UDP_SEGMENT), and GSODatagrams
	// the datagrams they carried: their ratio is the average batch.
	GSOSends     uint64 `json:"gso_sends"`
	GSODatagrams uint64 `json:"gso_datagrams"`
	// GSOFallbacks counts egress sockets on which the kernel refused
	// UDP_SEGMENT (for example EIO where the device lacks checksum
	// offload on older kernels); they send one datagram per send from
	// then on.
	GSOFallbacks uint64 `json:"gso_fallbacks"`
	// StatsDropped and LogsDropped count snapshots and log records the
	// worker dropped because its pipe to the supervisor was full.
	StatsDropped uint64 `json:"stats_dropped"`
	LogsDropped  uint64 `json:"logs_dropped"`
	// SocketErrors counts the worker's socket requests to the supervisor
	// that failed on the way (no reply in time, a reply whose fd was lost
	// because the worker was out of file descriptors, a reply out of
	// frame), and SocketResyncs the times the worker found that stream out
	// of frame and resynchronised it. Sockets the supervisor refused or
	// could not open are the rules' errors, not counted here.
	SocketErrors  uint64 `json:"socket_errors"`
	SocketResyncs uint64 `json:"socket_resyncs"`
}

// OutputCounters are the counters of one output of one rule.
type OutputCounters struct {
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	Errors     uint64 `json:"errors"`
	// NotSentIdle counts datagrams the output did not send because it
	// was idle (when_joined, no listener): not drops.
	NotSentIdle uint64 `json:"not_sent_idle,omitempty"`
}

// RuleCounters are one worker's cumulative counters for one rule. Outputs
// are in the order of the rule's outputs.
type RuleCounters struct {
	ID        string           `json:"id"`
	PacketsIn uint64           `json:"packets_in"`
	BytesIn   uint64           `json:"bytes_in"`
	Outputs   []OutputCounters `json:"outputs"`
	// Error, when set, says why the worker cannot serve (part of) the rule,
	// e.g. an output interface without an address.
	Error string `json:"error,omitempty"`
	// OutputErrors, when set, has one entry per output: why that output
	// cannot send (the text Error gives after its destination), "" for
	// those that can. Nil when every output can.
	OutputErrors []string `json:"output_errors,omitempty"`
}

// Snapshot is what a worker pushes on its stats pipe every stats interval.
// It doubles as the worker's heartbeat. Rules lists only the rules whose
// counters (or error) changed since the last snapshot the worker managed to
// send; a rule absent from a snapshot did not change.
type Snapshot struct {
	Worker int `json:"worker"`
	PID    int `json:"pid"`
	// Seq increases by one per snapshot built (sent or dropped).
	Seq uint64 `json:"seq"`
	// UnixNano is the worker's clock when the snapshot was taken.
	UnixNano    int64          `json:"unix_nano"`
	RulesetHash string         `json:"ruleset_hash"`
	Backend     string         `json:"backend"`
	Counters    WorkerCounters `json:"counters"`
	Rules       []RuleCounters `json:"rules,omitempty"`
	// Trace carries the events of the worker's traced rules recorded
	// since its last snapshot that was sent (the supervisor passes them
	// on to GetTrace; the aggregator ignores them).
	Trace []tracing.Event `json:"trace,omitempty"`
	// Ring is the state of the worker's receive rings when the snapshot
	// was taken.
	Ring RingUsage `json:"ring"`
}

// RingUsage is how full a worker's receive rings are: Used of their Size
// frames (blocks, for block rings) are the worker's, waiting to be relayed
// or held by sends in flight, summed over the worker's inputs. Both are 0
// without rings. A ring stays nearly empty while the worker keeps up; Used
// near Size means the next burst will find it full (RingFull).
type RingUsage struct {
	Used uint64 `json:"used"`
	Size uint64 `json:"size"`
}

// Report is the GetStats result (docs/control-protocol.md).
type Report struct {
	Rules   []RuleReport   `json:"rules"`
	Workers []WorkerReport `json:"workers"`
	Totals  Totals         `json:"totals"`
	// Namespace holds kernel counters of the daemon's network namespace
	// for losses no worker sees. The supervisor fills it in; nil (and
	// omitted) when they cannot be read.
	Namespace *NamespaceCounters `json:"namespace,omitempty"`
}

// RuleReport is one rule's counters summed over workers and lives.
type RuleReport struct {
	ID        string         `json:"id"`
	PacketsIn uint64         `json:"packets_in"`
	BytesIn   uint64         `json:"bytes_in"`
	PPS       float64        `json:"pps"`
	BPS       float64        `json:"bps"`
	Outputs   []OutputReport `json:"outputs"`
	Error     string         `json:"error,omitempty"`
}

// OutputReport is one output's counters summed over workers and lives.
type OutputReport struct {
	// Destination is "GROUP:PORT@IFACE", IPv6 as "[ff3e::1]:6000@eth1".
	Destination string `json:"destination"`
	PacketsOut  uint64 `json:"packets_out"`
	BytesOut    uint64 `json:"bytes_out"`
	Errors      uint64 `json:"errors"`
	// NotSentIdle counts datagrams not sent because the output was idle
	// (when_joined, no listener); they are not Errors.
	NotSentIdle uint64 `json:"not_sent_idle,omitempty"`
	// Error, when set, says why a worker cannot send to the output: it
	// is failing (the rule's Error names it too).
	Error string `json:"error,omitempty"`
	// State is set for outputs that follow their receivers (when_joined)
	// only: "active" while a listener wants them, "idle" while none does
	// (nothing is sent, and nothing counted as dropped), or the state of
	// their interface ("pending", "down"), as OutputDesc gives it.
	State string `json:"state,omitempty"`
}

// WorkerReport is one worker slot's counters, summed over its lives.
type WorkerReport struct {
	Worker int `json:"worker"`
	Core   int `json:"core"`
	WorkerCounters
	// Ring is the receive rings' state in the slot's last snapshot;
	// zero while no worker of the slot runs.
	Ring RingUsage `json:"ring"`
}

// Totals sums the report.
type Totals struct {
	PacketsIn   uint64 `json:"packets_in"`
	PacketsOut  uint64 `json:"packets_out"`
	KernelDrops uint64 `json:"kernel_drops"`
	// Rules and Outputs count the rules (by the state of their input
	// interface) and their outputs (by the state of each output's
	// interface). The supervisor fills them in; the Aggregator, which
	// knows no interfaces, leaves them zero, and zero is omitted.
	Rules   StateCounts `json:"rules,omitzero"`
	Outputs StateCounts `json:"outputs,omitzero"`
}

// StateCounts counts rules or outputs by interface state, the states
// ListRules reports (docs/control-protocol.md).
type StateCounts struct {
	Active  int `json:"active"`  // interface present and up
	Pending int `json:"pending"` // interface does not exist (yet)
	Down    int `json:"down"`    // interface exists but is down
	// Failing counts outputs whose interface is up but that a worker
	// cannot send to (OutputReport.Error); they are not in Active. Rules
	// have none: a rule with a failing output still forwards to the rest.
	Failing int `json:"failing,omitempty"`
	// Idle counts outputs that follow their receivers (when_joined) and
	// have none: their interface is up, they send nothing. Not in Active.
	Idle int `json:"idle,omitempty"`
}
