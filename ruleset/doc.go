// Package ruleset provides the forwarding-rule model of mcr: rules, their
// normalisation and validation, their stable default ids, a canonical
// encoding with an order-independent ruleset hash, strict decoding of
// config files, and the lookup table the worker's hot path uses to match a
// received packet to its rule.
//
// A rule goes through Normalize (canonical address text, default id), then
// Validate or, for a whole ruleset, ValidateSet; DecodeConfig and DecodeRule
// do all three after a strict JSON decode. Errors are *ValidationError and
// name the field: `rules[3].outputs[0].port: must be 1..65535`.
//
// Rule.Canonical is the byte form ids and hashes are computed over; Hash,
// HashCanonical and an incrementally kept SetHash give the same string for
// the same set of encodings, in any order.
//
// Table is built once per ruleset (NewTable, keys from KeyFor) and then only
// read: Lookup neither allocates nor locks.
//
// The package is pure Go and builds on every OS. It knows interface names but
// not interfaces: resolving a name to an ifindex is the supervisor's job, and
// the table is keyed by the ifindex the caller supplies.
package ruleset
