package querier

import (
	"fmt"
	"time"
)

// Config holds the protocol variables of RFC 3376 §8 and RFC 3810 §9. A nil
// *Config means all defaults; a zero field means its default. Both families
// of an interface share one Config.
type Config struct {
	// Querier makes the router send queries and take part in the querier
	// election; off, it only listens and keeps the listener table from
	// what hosts and the link's querier send. Default off.
	Querier bool
	// IGMPVersion is the version of the queries sent on IPv4: IGMPv3
	// (default) or IGMPv2. An IGMPv2 querier makes IGMPv3 hosts fall
	// back to IGMPv2 reports, and treats any IGMPv3 report it still gets
	// as an IGMPv2 router would understand it (RFC 3376 §7.3.2).
	IGMPVersion Protocol
	// MLDVersion is the version of the queries sent on IPv6: MLDv2
	// (default) or MLDv1.
	MLDVersion Protocol
	// Robustness is the Robustness Variable: how many lost packets the
	// protocol tolerates. Default 2; at least 1.
	Robustness int
	// QueryInterval is the time between general queries. Default 125 s;
	// from 1 s to MaxQueryInterval.
	QueryInterval time.Duration
	// QueryResponseInterval is the Max Resp Time of general queries.
	// Default 10 s; less than QueryInterval and at most what the query
	// version can carry (25.5 s for IGMPv2).
	QueryResponseInterval time.Duration
	// StartupQueryInterval is the time between the general queries a
	// querier sends when it starts. Default QueryInterval/4.
	StartupQueryInterval time.Duration
	// StartupQueryCount is how many general queries a starting querier
	// sends StartupQueryInterval apart. Default Robustness.
	StartupQueryCount int
	// LastMemberQueryInterval is the Max Resp Time of group-specific and
	// group-and-source-specific queries, and the time between their
	// retransmissions. Default 1 s; at least 100 ms.
	LastMemberQueryInterval time.Duration
	// LastMemberQueryCount is how many of those queries are sent.
	// Default Robustness.
	LastMemberQueryCount int
	// MaxGroups caps the groups of the table per interface and family; a
	// report for one more is ignored and counted (Counters.GroupsRefused).
	// It bounds the memory a hostile host on the link can make us spend.
	// Default 32768.
	MaxGroups int
	// MaxSources caps the source list of one group; longer lists are cut
	// and counted (Counters.SourcesRefused). Default 1024 (Linux hosts
	// send at most net.ipv4.igmp_max_msf, 10 by default, per socket).
	MaxSources int
}

// Defaults of Config.
const (
	DefaultRobustness              = 2
	DefaultQueryInterval           = 125 * time.Second
	DefaultQueryResponseInterval   = 10 * time.Second
	DefaultLastMemberQueryInterval = time.Second
	DefaultMaxGroups               = 32768
	DefaultMaxSources              = 1024
)

// withDefaults returns cfg with defaults filled in, or an error naming the
// first variable out of range.
func (cfg *Config) withDefaults() (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.IGMPVersion == 0 {
		c.IGMPVersion = IGMPv3
	}
	if c.MLDVersion == 0 {
		c.MLDVersion = MLDv2
	}
	def(&c.Robustness, DefaultRobustness)
	defDur(&c.QueryInterval, DefaultQueryInterval)
	defDur(&c.QueryResponseInterval, DefaultQueryResponseInterval)
	defDur(&c.StartupQueryInterval, c.QueryInterval/4)
	def(&c.StartupQueryCount, c.Robustness)
	defDur(&c.LastMemberQueryInterval, DefaultLastMemberQueryInterval)
	def(&c.LastMemberQueryCount, c.Robustness)
	def(&c.MaxGroups, DefaultMaxGroups)
	def(&c.MaxSources, DefaultMaxSources)

	switch {
	case c.IGMPVersion != IGMPv2 && c.IGMPVersion != IGMPv3:
		return c, fmt.Errorf("IGMP version %v: want IGMPv2 or IGMPv3", c.IGMPVersion)
	case c.MLDVersion != MLDv1 && c.MLDVersion != MLDv2:
		return c, fmt.Errorf("MLD version %v: want MLDv1 or MLDv2", c.MLDVersion)
	case c.Robustness < 1:
		return c, fmt.Errorf("robustness %d: want at least 1", c.Robustness)
	case c.QueryInterval < time.Second || c.QueryInterval > MaxQueryInterval:
		return c, fmt.Errorf("query interval %v: want 1s to %v", c.QueryInterval, MaxQueryInterval)
	case c.QueryResponseInterval < igmpUnit || c.QueryResponseInterval >= c.QueryInterval:
		return c, fmt.Errorf("query response interval %v: want at least 100ms and less than the query interval %v",
			c.QueryResponseInterval, c.QueryInterval)
	case c.LastMemberQueryInterval < igmpUnit:
		return c, fmt.Errorf("last member query interval %v: want at least 100ms", c.LastMemberQueryInterval)
	case c.StartupQueryInterval <= 0 || c.StartupQueryCount < 1 || c.LastMemberQueryCount < 1:
		return c, fmt.Errorf("startup query interval %v, startup query count %d, last member query count %d: want positive values",
			c.StartupQueryInterval, c.StartupQueryCount, c.LastMemberQueryCount)
	case c.MaxGroups < 1 || c.MaxSources < 1:
		return c, fmt.Errorf("max groups %d, max sources %d: want positive values", c.MaxGroups, c.MaxSources)
	}
	for _, p := range []Protocol{c.IGMPVersion, c.MLDVersion} {
		limit := MaxResponseTime(p)
		if c.QueryResponseInterval > limit || c.LastMemberQueryInterval > limit {
			return c, fmt.Errorf("query response interval %v, last member query interval %v: %v queries carry at most %v",
				c.QueryResponseInterval, c.LastMemberQueryInterval, p, limit)
		}
	}
	return c, nil
}

// timing holds the variables that derive timers. A querier uses its own;
// a router that is not the querier adopts the robustness and query interval
// of the querier's queries (RFC 3376 §4.1.6, §4.1.7), so that all routers
// on the link time groups out alike.
type timing struct {
	robustness int
	qi, qri    time.Duration
	lmqi       time.Duration
	lmqc       int
}

// gmi is the Group Membership Interval (RFC 3376 §8.4), also the Older Host
// Present Interval (§8.13): how long a report keeps a group or source.
func (t timing) gmi() time.Duration { return time.Duration(t.robustness)*t.qi + t.qri }

// oqpi is the Other Querier Present Interval (RFC 3376 §8.5): how long a
// querier that lost the election stays silent after the winner's last query.
func (t timing) oqpi() time.Duration { return time.Duration(t.robustness)*t.qi + t.qri/2 }

// lmqt is the Last Member Query Time (RFC 3376 §8.10).
func (t timing) lmqt() time.Duration { return time.Duration(t.lmqc) * t.lmqi }
