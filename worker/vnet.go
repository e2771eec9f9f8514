package worker

import "encoding/binary"

// vnetHdrLen is the size of struct virtio_net_hdr, which the kernel puts
// before every packet an input socket receives (PACKET_VNET_HDR).
const vnetHdrLen = 10

// virtio_net_hdr gso_type values (include/uapi/linux/virtio_net.h).
const (
	vnetGSONone  = 0
	vnetGSOUDP   = 3 // UFO: one datagram, to be cut into IP fragments
	vnetGSOUDPL4 = 5 // UDP_SEGMENT: gso_size-byte datagrams, the last possibly shorter
	vnetGSOECN   = 0x80
)

// virtio_net_hdr flags (include/uapi/linux/virtio_net.h), the values of
// rxCsumPartial and rxCsumValid.
const (
	vnetFNeedsCsum = 1
	vnetFDataValid = 2
)

// parse copies the flags into rxMeta as they are: these indexes are out of
// range, a compile error, if the values ever differ.
var (
	_ = [1]struct{}{}[rxCsumPartial-vnetFNeedsCsum]
	_ = [1]struct{}{}[rxCsumValid-vnetFDataValid]
)

// vnetHdr is the part of struct virtio_net_hdr the dispatcher uses.
//
// Over veth, tun and loopback, and for traffic the host sends itself, the
// kernel hands a packet socket UDP GSO aggregates unsegmented: one packet
// whose IP and UDP headers describe the whole, and whose payload is the
// payloads of several datagrams end to end (gso_type UDP_L4, each gso_size
// bytes but the last). Only the virtio_net_hdr says so; without it an
// aggregate would pass for one big datagram.
//
// The flags give the checksum state (virtio_net_hdr_from_skb): NEEDS_CSUM
// for CHECKSUM_PARTIAL (a checksum left to offload: every datagram a local
// sender or a VM sends over veth or tap, and GSO aggregates), DATA_VALID
// for CHECKSUM_UNNECESSARY (the NIC verified it), neither otherwise (the
// checksum is in the packet, unverified). The checksum offsets do not
// matter: the relay re-sends payloads, never the received headers.
type vnetHdr struct {
	gsoType uint8
	gsoSize int
	csum    rxMeta // rxCsumPartial, rxCsumValid or 0
}

// parse reads the header at the start of pkt; false if pkt is too short.
// The kernel writes the fields in host byte order (virtio_net_hdr_from_skb
// with little_endian = vio_le(), true on every little-endian host; mcr
// supports no other).
func (h *vnetHdr) parse(pkt []byte) bool {
	if len(pkt) < vnetHdrLen {
		return false
	}
	h.csum = rxMeta(pkt[0] & (vnetFNeedsCsum | vnetFDataValid))
	h.gsoType = pkt[1] &^ vnetGSOECN
	h.gsoSize = int(binary.LittleEndian.Uint16(pkt[4:6]))
	return true
}

// segments returns how many datagrams a UDP payload of n bytes carries,
// and the size of each but the last; ok is false for a GSO type other
// than UDP or an aggregate that contradicts its header. A UFO packet (the
// legacy GSO_UDP) is one datagram: the kernel would send it as IP
// fragments of one datagram, which a receiver reassembles.
func (h *vnetHdr) segments(n int) (count, size int, ok bool) {
	switch h.gsoType {
	case vnetGSONone, vnetGSOUDP:
		return 1, n, true
	case vnetGSOUDPL4:
		if h.gsoSize == 0 || n == 0 {
			return 0, 0, false
		}
		return (n + h.gsoSize - 1) / h.gsoSize, h.gsoSize, true
	}
	return 0, 0, false
}
