// Package pcap provides a writer of classic pcap files (the libpcap format
// tcpdump, tshark and Wireshark read) with link type raw IP, and builds
// the IPv4 or IPv6 and UDP headers of a datagram for it.
//
// It writes only: mcr records datagrams (mcrctl capture), it never reads
// captures. Timestamps have microseconds, the resolution every reader
// takes.
package pcap
