// Package links owns the daemon's view of the network interfaces and
// their addresses: View resolves interface names to links by ifindex,
// Addrs holds each link's addresses per family, and Follower keeps a
// receiver of Events in step with the kernel over netlink, re-listing
// everything after a lost event so the view never misses a change.
//
// The package knows nothing of rules: the supervisor's rule owner
// implements Events and decides what a change means for the rules.
package links
