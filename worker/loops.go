package worker

import "net/netip"

// loopSet holds the egress identities of the worker's outputs: the source
// addresses and ports their datagrams leave with. A datagram that arrives
// on an input with one of them is the relay's own output come back — a
// loop in the network (two bridges, a mis-set switch) — and relaying it
// again would keep it circulating forever; the dispatcher drops and counts
// it (loops). Transparent outputs keep the input's source and are not
// here: their TTL, one less per pass, ends a loop.
//
// It is built by commit and then only read. has costs one bit test for a
// datagram whose source port no identity has, which is nearly every one.
type loopSet struct {
	ports [65536 / 64]uint64 // bit p: some identity has source port p
	addrs map[loopKey]struct{}
}

// loopKey is one identity; the address is 16 bytes, IPv4 mapped, as
// packet.Datagram has it.
type loopKey struct {
	addr [16]byte
	port uint16
}

func (l *loopSet) add(a netip.Addr, port uint16) {
	if l.addrs == nil {
		l.addrs = map[loopKey]struct{}{}
	}
	l.ports[port>>6] |= 1 << (port & 63)
	l.addrs[loopKey{a.As16(), port}] = struct{}{}
}

// has reports whether src:port is one of the identities. It does not
// allocate.
func (l *loopSet) has(src *[16]byte, port uint16) bool {
	if l.ports[port>>6]&(1<<(port&63)) == 0 {
		return false
	}
	_, ok := l.addrs[loopKey{*src, port}]
	return ok
}

// buildLoops collects the identities of the outputs on open UDP sockets:
// the socket's port with the output's source address or, when it names
// none, each address of its interface the supervisor sent
// (WorkerRule.OutputAddrs), one of which the kernel picks per send.
func (db *ruleDB) buildLoops() *loopSet {
	l := &loopSet{}
	for _, r := range db.byID {
		for i := range r.outputs {
			o := &r.outputs[i]
			if o.d == nil || o.d.eg.port == 0 {
				continue
			}
			eg := o.d.eg
			if eg.key.Src.IsValid() {
				l.add(eg.key.Src, eg.port)
				continue
			}
			if i < len(r.srcAddrs) {
				for _, a := range r.srcAddrs[i] {
					l.add(a, eg.port)
				}
			}
		}
	}
	return l
}
