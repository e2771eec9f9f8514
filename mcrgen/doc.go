// Package mcrgen provides the mcrgen traffic tool: a Sender of paced UDP
// streams whose every byte can be verified, a Receiver that accounts loss,
// duplicates, reordering, corruption and one-way latency, and Main, the
// `mcrgen send` / `mcrgen recv` command line (docs/cli.md) built on them.
//
// # Payload
//
// Every datagram of a stream carries a 24-byte header, big-endian:
//
//	offset size field
//	     0    2 magic 0x4d47 ("MG")
//	     2    2 stream id
//	     4    8 sequence number, from 0 per stream
//	    12    8 send time, Unix nanoseconds of the sender's wall clock
//	    20    4 CRC-32C (Castagnoli) of the whole payload except this field
//
// followed by a pattern derived from the sequence number: for the k-th
// 8-byte word after the header, little-endian, base[k] XOR seq·0x9e3779b97f4a7c15,
// where base is splitmix64 seeded with 0 (a last partial word keeps its low
// bytes). Every byte thus depends on the sequence number and its position:
// a receiver recomputes the pattern and checks all of them, besides the
// checksum, so a relay that hands one datagram's bytes to another is caught
// even if the checksum happened to match. Payloads are 24 to 65,000 bytes.
//
// `send --size 0` sends empty datagrams, an edge case for relay tests. A
// receiver counts them as received and unverified: they carry no header, so
// they are not in the loss, duplicate or latency accounting.
//
// `send --hop-cpus 0,1` moves the sending thread between CPUs, --hop-every
// datagrams (50) on each in turn. veth and tun hand a datagram to the
// receiving side on the CPU that sent it, so the stream reaches a relay on
// several CPUs, as a sender the scheduler migrates does now and then: the
// test of a relay that must not reorder a stream. `send --source-port`
// sends from a fixed port, so that two runs are one flow.
//
// # Accounting
//
// A Receiver keeps, per stream id, the lowest and highest sequence number
// seen and a bitmap of the last 65,536 numbers. Lost is what is missing
// between the lowest and the highest, so loss before the first or after
// the last datagram received is invisible: compare received with the
// sender's count. A datagram older than its stream's newest is a duplicate
// if its number was seen, else reordered. Corrupt datagrams (short, wrong
// magic, checksum or pattern) are counted and otherwise ignored. Latency
// goes into a fixed-size log-linear histogram (3 % resolution), so memory
// does not grow with the run.
//
// recv's --timeout is an overall deadline from the start, not an idle
// timeout; --count ends the run as soon as that many datagrams arrived.
// Once it has joined, recv prints "mcrgen recv: listening on …" on stderr:
// scripts wait for that line before they start a sender.
//
// The sockets are Linux-only (socket_linux.go): on other systems NewSender
// and NewReceiver fail with errors.ErrUnsupported.
package mcrgen
