package tracing

import (
	"fmt"
	"syscall"
)

// Kind is what happened to a datagram. The zero value is invalid.
type Kind uint8

const (
	// Received: the datagram matched the rule on its input.
	Received Kind = iota + 1
	// Sent: the kernel took the datagram for one output of the rule.
	Sent
	// Dropped: the datagram was dropped; Reason says why.
	Dropped
	// Unmatched: a datagram arrived on the rule's input interface but
	// matched no rule; Reason says how it differs from the rule.
	Unmatched
	// Lost: Count events the worker's trace ring could not hold (its
	// reader fell behind); they are gone.
	Lost
	// NotSent: the datagram was not sent on one output on purpose, which
	// is not a drop; Reason says why.
	NotSent
)

var kindNames = [...]string{Received: "received", Sent: "sent", Dropped: "dropped", Unmatched: "unmatched", Lost: "lost",
	NotSent: "not_sent",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// MarshalText encodes k as its name.
func (k Kind) MarshalText() ([]byte, error) {
	if int(k) >= len(kindNames) || kindNames[k] == "" {
		return nil, fmt.Errorf("invalid trace event kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n != "" && n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown trace event kind %q", b)
}

// Reason says why a datagram was dropped, matched no rule or was not
// sent. The zero value is "no reason": events that are none of these.
type Reason uint8

const (
	_ Reason = iota
	// EgressError: the send failed with Errno.
	EgressError
	// OutputDown: the send failed because the output interface is down
	// or gone: ENETDOWN, ENXIO, ENODEV, or ENETUNREACH, which a send
	// bound to its interface gets once the interface's routes went down
	// with it.
	OutputDown
	// NoSocket: the output has no socket to send on (its rule's error
	// says why).
	NoSocket
	// TTLExpired: a transparent output's datagram had no TTL left.
	TTLExpired
	// Malformed: the packet's headers did not parse.
	Malformed
	// Fragment: an IP fragment the kernel did not reassemble.
	Fragment
	// NotUDP: a packet that is not UDP. Workers do not trace these:
	// ARP, ICMP, IGMP and MLD on a traced input would drown the rest.
	NotUDP
	// VLANTagged: a frame of a VLAN on the input interface.
	VLANTagged
	// BadChecksum: the UDP checksum was wrong.
	BadChecksum
	// Loop: the datagram came from one of the relay's own outputs.
	Loop
	// RingFull: Count packets the kernel dropped on the input because
	// the worker's receive ring (or socket buffer) was full.
	RingFull
	// WrongGroup: the datagram's destination is not the rule's group.
	WrongGroup
	// WrongPort: the datagram went to the rule's group on another port.
	WrongPort
	// WrongSource: group and port match, but the rule wants another
	// source.
	WrongSource
	// Idle: the output follows its receivers (when_joined) and no
	// listener wants its group on its interface; the stats count the
	// datagram as not_sent_idle.
	Idle
)

var reasonNames = [...]string{
	EgressError: "egress_error", OutputDown: "output_down", NoSocket: "no_socket", TTLExpired: "ttl_expired",
	Malformed: "malformed", Fragment: "fragment", NotUDP: "not_udp", VLANTagged: "vlan_tagged",
	BadChecksum: "bad_checksum", Loop: "loop", RingFull: "ring_full",
	WrongGroup: "wrong_group", WrongPort: "wrong_port", WrongSource: "wrong_source",
	Idle: "idle",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// MarshalText encodes r as its name.
func (r Reason) MarshalText() ([]byte, error) {
	if int(r) >= len(reasonNames) || reasonNames[r] == "" {
		return nil, fmt.Errorf("invalid trace drop reason %d", uint8(r))
	}
	return []byte(reasonNames[r]), nil
}

// UnmarshalText decodes a reason's name.
func (r *Reason) UnmarshalText(b []byte) error {
	for i, n := range reasonNames {
		if n != "" && n == string(b) {
			*r = Reason(i)
			return nil
		}
	}
	return fmt.Errorf("unknown trace drop reason %q", b)
}

// SendReason classifies a failed send by its errno: 0 means the output
// had no socket.
func SendReason(errno syscall.Errno) Reason {
	switch errno {
	case 0:
		return NoSocket
	case syscall.ENETDOWN, syscall.ENETUNREACH, syscall.ENXIO, syscall.ENODEV:
		return OutputDown
	}
	return EgressError
}

// Event is one trace event. Workers fill in everything but Seq, which the
// supervisor numbers per rule; fields that do not apply to the Kind are
// left out of the JSON.
type Event struct {
	// Seq numbers a rule's events from 1 in the order the supervisor
	// received them (GetTrace "since").
	Seq uint64 `json:"seq,omitempty"`
	// UnixNano is when the worker saw it, its wall clock.
	UnixNano int64  `json:"unix_nano"`
	Worker   int    `json:"worker"`
	Rule     string `json:"rule"`
	Kind     Kind   `json:"kind"`
	Reason   Reason `json:"reason,omitempty"`
	// Errno is the send's error number for EgressError and OutputDown,
	// Error its text.
	Errno int    `json:"errno,omitempty"`
	Error string `json:"error,omitempty"`
	// Source and Destination are the datagram's addresses
	// ("10.0.0.1:5000", "[ff3e::1]:5000"): as received for received,
	// dropped and unmatched events; for sent events the output's
	// destination and, when known, the address and port it leaves from.
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	// Size is the UDP payload's length in bytes.
	Size int `json:"size,omitempty"`
	// Output is the index of the rule's output for sent and not_sent
	// events and drops on an output.
	Output *int `json:"output,omitempty"`
	// Segment (from 1) of Segments: the datagram left in one UDP GSO
	// send with Segments-1 others. Absent for a plain send.
	Segment  int `json:"segment,omitempty"`
	Segments int `json:"segments,omitempty"`
	// Count is how many packets a ring_full drop or a lost event stands
	// for, or datagrams an unmatched UDP GSO aggregate carried.
	Count uint64 `json:"count,omitempty"`
	// Data is the start of the UDP payload, at most the trace's snaplen
	// bytes (base64 in JSON); absent when the snaplen is 0.
	Data []byte `json:"data,omitempty"`
}
