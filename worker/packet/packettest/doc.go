// Package packettest builds IPv4 and IPv6 UDP packets, with correct
// checksums, as an AF_PACKET SOCK_DGRAM socket delivers them (starting at
// the IP header), for tests of the worker's parser, filter and data path;
// it wraps them in Ethernet frames, with VLAN tags if asked, and on Linux
// injects packets and frames into an interface (Inject, InjectFrames).
//
// It is an ordinary package so that tests anywhere in mcr can import it. Its
// functions panic on misuse (a wrong address family, a packet too short to
// edit): they serve tests, where a panic is a clear failure.
package packettest
