package querier

import (
	"net/netip"
	"strconv"
)

// EventKind says what changed. The zero value is invalid.
type EventKind uint8

const (
	// Joined: a group got its first listener on the interface.
	Joined EventKind = iota + 1
	// Left: the last listener of a group left or stopped answering
	// queries; the group is gone from the table.
	Left
	// FilterChanged: the sources a group's listeners want changed.
	FilterChanged
	// RoleChanged: the router's role in the querier election changed, or
	// the querier it defers to did (Event.Role, Event.Querier).
	RoleChanged
)

// String returns a short lowercase name of the kind, as logs use it.
func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Left:
		return "left"
	case FilterChanged:
		return "filter changed"
	case RoleChanged:
		return "role changed"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event reports a change of the listener table or of the querier election
// on one interface and family. The receiver owns it, Filter.Sources
// included.
type Event struct {
	Kind    EventKind
	Ifindex int
	Family  Family
	// Group and Filter: the group that changed and what its listeners
	// want now (for Left, the zero Filter). Reporter is the host whose
	// message caused the change; invalid when a timer did.
	Group    netip.Addr
	Filter   Filter
	Reporter netip.Addr
	// Role is the router's role after a RoleChanged; Querier the address
	// of the querier on the link then (ours when Role is Querier; invalid
	// when none is known).
	Role    Role
	Querier netip.Addr
}
