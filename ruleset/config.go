package ruleset

import (
	"fmt"
	"slices"
	"time"
)

// Config is the ruleset as stored in a config file (`--config`) and carried
// by LoadConfig/GetConfig: `{"rules":[…]}`, with optional querier settings.
// Files are decoded strictly: an unknown field is an error that names it.
type Config struct {
	Querier Querier `json:"querier,omitzero"`
	Rules   []Rule  `json:"rules"`
}

// Querier holds the IGMP/MLD querier settings a config file may carry next
// to its rules. They add to mcrd's flags: the relay is the querier on the
// interfaces of --querier and of Interfaces, and QueryInterval, when set,
// replaces --query-interval. A reload applies them.
type Querier struct {
	// Interfaces are where the relay is the IGMP/MLD querier.
	Interfaces []string `json:"interfaces,omitempty"`
	// QueryInterval is the time between general queries, as a Go
	// duration ("125s", "2m"): MinQueryInterval to MaxQueryInterval.
	QueryInterval string `json:"query_interval,omitempty"`
}

// The bounds of Querier.QueryInterval: the protocol carries at most
// 31,744 s; intervals below the default 125 s are for tests and labs.
const (
	MinQueryInterval = time.Second
	MaxQueryInterval = 31744 * time.Second
)

// Interval returns QueryInterval parsed; 0 when it is not set.
func (q Querier) Interval() time.Duration {
	d, _ := time.ParseDuration(q.QueryInterval) // validated
	return d
}

// validate checks the settings; the field paths start with "querier".
func (q *Querier) validate() *ValidationError {
	for i, name := range q.Interfaces {
		field := fmt.Sprintf("querier.interfaces[%d]", i)
		if err := validateInterface(field, name); err != nil {
			return err
		}
		if slices.Index(q.Interfaces, name) < i {
			return invalid(field, "%q is listed twice", name)
		}
	}
	if q.QueryInterval == "" {
		return nil
	}
	d, err := time.ParseDuration(q.QueryInterval)
	if err != nil || d < MinQueryInterval || d > MaxQueryInterval {
		return invalid("querier.query_interval", "%q: want a duration from %v to %v, such as \"125s\"",
			q.QueryInterval, MinQueryInterval, MaxQueryInterval)
	}
	return nil
}
