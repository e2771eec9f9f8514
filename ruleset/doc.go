// Package ruleset provides the forwarding-rule model of mcr: rules, their
// validation, their stable default ids, a canonical encoding with an
// order-independent ruleset hash, and the lookup table the worker's hot path
// uses to match a received packet to its rule.
//
// The package is pure Go and builds on every OS. It knows interface names but
// not interfaces: resolving a name to an ifindex is the supervisor's job, and
// the table is keyed by the ifindex the caller supplies.
package ruleset
