package worker

import (
	"encoding/binary"
	"syscall"

	"github.com/mcrelay/mcr/ruleset"
	"github.com/mcrelay/mcr/stats"
	"github.com/mcrelay/mcr/tracing"
	"github.com/mcrelay/mcr/worker/packet"
)

// sender is the backend's half of forwarding: it queues sends, and reports
// their outcome later through dispatcher.sent and dispatcher.failed.
type sender interface {
	// send queues the n payload bytes at pkt[off:] for o, which is open.
	// buf names the pool buffer that holds pkt; the backend keeps that
	// buffer until the send completes. hdr is nil, or for a transparent
	// output the IP and UDP headers the datagram leaves with, which the
	// backend copies: the payload stays where it was received. A send
	// that cannot even be queued is counted as failed by the backend.
	send(o *output, buf int, pkt []byte, off, n int, hdr []byte)
}

// dispatcher is the per-packet logic both backends share: parse, look up,
// hand each output to the backend, count. It is owned by the event loop.
type dispatcher struct {
	db *ruleDB
	c  stats.WorkerCounters

	// Scratch space for the packet being dispatched; fields, not locals,
	// so that nothing escapes per packet.
	dg  packet.Datagram
	vh  vnetHdr
	key ruleset.Key
	org origin       // of the packet, for transparent outputs
	hdr [maxHdr]byte // the headers of one transparent send
}

// rxMeta is what the kernel tells about a received packet besides its
// bytes: the state of its checksum and whether it carried a VLAN tag that
// the kernel moved out of the frame into packet metadata. The
// virtio_net_hdr carries the checksum state of every packet (vnetHdr); a
// TPACKET_V3 ring adds its own per-packet status (blockIter). The two
// checksum bits have the values of the virtio_net_hdr flags they come from.
type rxMeta uint8

const (
	// rxCsumPartial: the checksum is not computed yet, left to offload
	// by a sender on this host or a VM (CHECKSUM_PARTIAL:
	// VIRTIO_NET_HDR_F_NEEDS_CSUM, TP_STATUS_CSUMNOTREADY). The field
	// holds only the pseudo-header's sum, so the packet must not be
	// verified; its data never crossed a wire.
	rxCsumPartial rxMeta = 1
	// rxCsumValid: the NIC or the kernel verified the checksum already
	// (VIRTIO_NET_HDR_F_DATA_VALID, TP_STATUS_CSUM_VALID).
	rxCsumValid rxMeta = 2
	// rxTagged: the frame carried a VLAN tag with a VLAN ID, which the
	// kernel stripped into metadata before packet sockets saw it
	// (TP_STATUS_VLAN_VALID with a non-zero VLAN ID in tp_vlan_tci).
	rxTagged rxMeta = 4
)

// forward dispatches one packet received on ifindex. pkt is the buffer
// holding it and n the length the kernel reported, which exceeds len(pkt)
// when the packet was truncated (MSG_TRUNC). The packet starts with a
// virtio_net_hdr (vnetHdr), then link bytes of link-layer header, then the
// IP header. meta is what the receive ring said about the packet (0 for a
// packet received without one). A UDP GSO aggregate is dispatched as the
// datagrams it carries, each counted and sent on its own, all from pkt.
// The sends it queues hold buf until they complete. A datagram whose
// source is one of the worker's egress identities is the relay's own
// output come back: it is counted (loops) and dropped.
//
// Only the input interface's own traffic is relayed: a frame that carried
// a VLAN tag belongs to that VLAN's interface and is counted as
// vlan_tagged, whether the tag is still in the frame (an inner tag of
// QinQ) or in metadata (meta; without a ring the input's filter drops
// those in the kernel, see prefilter.DropVLANTagged). A priority tag, VLAN ID
// 0, is no VLAN: the frame is the interface's, as in the kernel's own
// receive path. A datagram that matches a rule has its UDP checksum
// verified unless the kernel knows it is valid or partial (rxMeta); a
// wrong one is counted as bad_checksum instead of being relayed with a
// fresh checksum.
//
// forward does not allocate, lock or make system calls.
func (d *dispatcher) forward(ifindex int32, link int, pkt []byte, n int, buf int, meta rxMeta, s sender) {
	d.c.RxPackets++
	if n > len(pkt) || n < vnetHdrLen+link || !d.vh.parse(pkt[:n]) {
		d.c.Malformed++
		if d.db.traceIns != nil {
			d.traceInput(ifindex, tracing.Malformed, 1, n)
		}
		return
	}
	if meta&rxTagged != 0 {
		d.c.VLANTagged++
		return
	}
	ip := vnetHdrLen + link
	var reason packet.Reason
	if link >= 2 {
		// Every link header linkHeaderLen accepts that has one ends
		// with the EtherType.
		reason = packet.ParseEtherType(binary.BigEndian.Uint16(pkt[ip-2:]), pkt[ip:n], &d.dg)
	} else {
		reason = packet.Parse(pkt[ip:n], &d.dg)
	}
	if reason != packet.OK && reason != packet.NotUDP && d.db.traceIns != nil {
		d.traceInput(ifindex, traceReason(reason), 1, n-ip)
	}
	switch reason {
	case packet.OK:
	case packet.Fragment:
		d.c.Fragments++
		return
	case packet.NotUDP:
		d.c.NotUDP++
		return
	case packet.VLANTagged:
		d.c.VLANTagged++
		return
	default:
		d.c.Malformed++
		return
	}
	count, size, ok := d.vh.segments(d.dg.PayloadLen)
	if !ok {
		d.c.Malformed++
		return
	}
	d.c.RxPackets += uint64(count - 1)
	d.key.IfIndex, d.key.Port = ifindex, d.dg.DstPort
	d.key.Dst, d.key.Src = d.dg.Dst, d.dg.Src
	i, ok := d.db.table.Lookup(&d.key)
	if !ok {
		d.c.NoMatch += uint64(count)
		if d.db.traceIns != nil {
			d.traceUnmatched(ifindex, count)
		}
		return
	}
	if d.db.loops.has(&d.dg.Src, d.dg.SrcPort) {
		d.c.Loops += uint64(count)
		if r := d.db.byIndex[i]; r.trace != nil {
			d.traceRule(r, tracing.Loop, nil)
		}
		return
	}
	// Verified only once a rule wants the datagram: what is dropped
	// anyway costs nothing more. A UDP GSO aggregate the kernel marks
	// neither partial nor valid (it never builds one: a sender's is
	// partial, GRO's partial or valid) is checked as the one datagram its
	// headers describe, which its per-segment checksum cannot match.
	if (meta|d.vh.csum)&(rxCsumPartial|rxCsumValid) == 0 && !packet.UDPChecksumOK(pkt[ip:n], &d.dg) {
		d.c.BadChecksum += uint64(count)
		if r := d.db.byIndex[i]; r.trace != nil {
			d.traceRule(r, tracing.BadChecksum, nil)
		}
		return
	}
	r := d.db.byIndex[i]
	if r.trace != nil {
		d.traceReceived(r, pkt, ip, size, count)
	}
	r.packetsIn += uint64(count)
	r.bytesIn += uint64(d.dg.PayloadLen)
	if r.transparent {
		d.org.read(pkt[ip:n], &d.dg, (meta|d.vh.csum)&rxCsumPartial != 0 || count > 1)
	}
	off, end := ip+d.dg.PayloadOff, ip+d.dg.PayloadOff+d.dg.PayloadLen
	for seg := 0; seg < count; seg++ {
		d.fanOut(r, buf, pkt, off, min(size, end-off), seg, s)
		off += size
	}
}

// fanOut hands the n payload bytes at pkt[off:], segment seg of the
// packet, to every output of r.
func (d *dispatcher) fanOut(r *rule, buf int, pkt []byte, off, n, seg int, s sender) {
	for j := range r.outputs {
		o := &r.outputs[j]
		if o.idle { // no listener wants it: not sent, and not a drop
			o.cnt.NotSentIdle++
			if o.trace != nil {
				o.traceNotSent(tracing.Idle, n)
			}
			continue
		}
		if !o.open() {
			d.failed(o, 0)
			continue
		}
		if !o.transparent {
			s.send(o, buf, pkt, off, n, nil)
			continue
		}
		k, ok := d.org.header(&d.hdr, seg, o.d, o.ttlCap, pkt[off:off+n])
		if !ok {
			d.c.TTLExpired++
			if o.trace != nil {
				o.traceFailed(0, tracing.TTLExpired)
			}
			continue
		}
		s.send(o, buf, pkt, off, n, d.hdr[:k])
	}
}

// sent counts a completed send of n payload bytes on o.
func (d *dispatcher) sent(o *output, n int) {
	o.cnt.PacketsOut++
	o.cnt.BytesOut += uint64(n)
}

// failed counts a dropped or failed send on o; errno 0 means o has no
// socket.
func (d *dispatcher) failed(o *output, errno syscall.Errno) {
	o.cnt.Errors++
	o.lastErrno = errno
	d.c.EgressErrors++
	if o.trace != nil {
		o.traceFailed(errno, tracing.SendReason(errno))
	}
}

// sentGSO counts a completed UDP_SEGMENT send that carried n datagrams,
// each also counted with sent.
func (d *dispatcher) sentGSO(n int) {
	d.c.GSOSends++
	d.c.GSODatagrams += uint64(n)
}
