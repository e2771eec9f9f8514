package controlproto

// InterfaceGroups is one interface of the ListGroups result: the IGMP/MLD
// listener table the supervisor keeps there and, per family, its part in
// the querier election. ListGroups lists every interface the supervisor
// listens on (each output interface of the rules and each --querier
// interface that exists), in name order.
type InterfaceGroups struct {
	Interface string `json:"interface"`
	Ifindex   int    `json:"ifindex"`
	// Querier: --querier names the interface, so the relay queries it
	// when it wins the election; false: it only listens.
	Querier bool `json:"querier"`
	// Families are IPv4 (IGMP) then IPv6 (MLD).
	Families []FamilyQuerier `json:"families"`
	// Groups are the groups with listeners, IPv4 first, each family in
	// address order; never null.
	Groups []GroupListeners `json:"groups"`
}

// FamilyQuerier is one family's querier election and counters on an
// interface.
type FamilyQuerier struct {
	Family string `json:"family"` // "ipv4" or "ipv6"
	// Role is "listener" (querying off), "querier", "non-querier" (a
	// lower address queries) or "no address" (querying on, but no
	// address to query from).
	Role string `json:"role"`
	// Address is ours (IPv4: the interface's first; IPv6: its link-local);
	// Querier the link's querier: ours when Role is "querier". Empty
	// when none is known.
	Address string `json:"address,omitempty"`
	Querier string `json:"querier,omitempty"`
	// QuerierExpiresMs: in how many milliseconds another querier counts
	// as gone unless heard again (non-querier only).
	QuerierExpiresMs int64  `json:"querier_expires_ms,omitempty"`
	Groups           int    `json:"groups"`
	QueriesSent      uint64 `json:"queries_sent"`
	QueriesReceived  uint64 `json:"queries_received"`
	Reports          uint64 `json:"reports"`
	Leaves           uint64 `json:"leaves"`
	GroupsRefused    uint64 `json:"groups_refused,omitempty"`
}

// GroupListeners is one group with listeners on an interface.
type GroupListeners struct {
	Group string `json:"group"`
	// Mode is "include" or "exclude": listeners want only Sources, or
	// every source but Sources ("exclude" with no sources: any source).
	Mode    string   `json:"mode"`
	Sources []string `json:"sources,omitempty"`
	// Version is the group's compatibility mode: the oldest protocol a
	// listener reported it with lately ("IGMPv2", "MLDv2", …).
	Version string `json:"version"`
	// Reporter is the source of the last report; ExpiresMs is in how many
	// milliseconds the group leaves the table unless a listener reports
	// again.
	Reporter  string `json:"reporter,omitempty"`
	ExpiresMs int64  `json:"expires_ms"`
}
