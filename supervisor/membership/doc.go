// Package membership holds the daemon's IGMP/MLD group memberships on its
// input interfaces: Joins counts the rules that want each membership,
// joins it once and leaves it with the last, on helper sockets it pools
// per interface and family past the kernel's per-socket caps. OpenUDP
// opens the helper sockets of the real daemon: unbound UDP sockets, which
// hold memberships and receive nothing.
//
// The package knows nothing of rules or links: the supervisor's master
// ruleset decides which membership a rule needs.
package membership
