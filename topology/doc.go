// Package topology provides mcr's real-world topology suite: end-to-end tests
// that build network namespaces shaped like the networks users run (relay
// chains, trees, merges, high fan-out, unicast tunnels, Linux bridges with
// IGMP snooping, vxlan and tun inputs, thousands of groups), start the real
// mcrd, mcrctl and mcrgen binaries inside them, send verifiable traffic and
// check what arrived, byte for byte, against the daemon's own counters.
//
// The package holds only tests. They are Linux-only, need root (network
// namespaces, AF_PACKET) and skip with a message otherwise, or when
// MCR_SKIP_PRIVILEGED=1. Each scenario builds and removes its own
// namespaces; independent scenarios run in parallel. Rates are modest
// (thousands of datagrams per second) so that the suite is an honest
// functional check on a small machine, not a benchmark: see scripts/bench
// for throughput.
package topology
