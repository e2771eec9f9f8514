// Package tuning provides the supervisor's advice on host settings that
// would cost the relay packets: socket buffer caps, the per-CPU backlog,
// and UDP-merging GRO on input interfaces. Check reads them when the first
// rule on an input interface reaches the workers and logs each warning
// once, with the fix and the tune-kernel.sh to run.
//
// It only reads and advises: it changes no setting (tune-kernel.sh does).
// Reading the host (sysctls, ethtool features, RPS masks) is Linux-only;
// judging what was read is plain Go.
package tuning
