package worker

import "syscall"

// UDP generic segmentation offload (GSO, Linux 4.18+): one send carries
// several datagrams and a segment size (the UDP_SEGMENT control message);
// the kernel cuts it into datagrams of that size, the last one possibly
// shorter, after one route lookup and with one socket buffer instead of
// one per datagram. Receivers see the individual datagrams.

// gsoMaxSegments is the most datagrams one UDP_SEGMENT send carries:
// the kernel's UDP_MAX_SEGMENTS, 64 until Linux 6.9 (and the stable
// kernels it was backported to), 128 since. The worker probes which at
// start.
const gsoMaxSegments = 128

// Payload bytes one send can carry, segmented or not: the IPv4 total
// length (16 bits) counts the 20-byte IPv4 and 8-byte UDP headers; the
// IPv6 payload length counts only the UDP header.
const (
	maxSendPayload4 = 65535 - 20 - 8
	maxSendPayload6 = 65535 - 8
)

// gsoLimits bound the UDP_SEGMENT sends of one egress socket. The zero
// value means plain sends only: GSO is unsupported or was refused.
type gsoLimits struct {
	maxSegs  int // datagrams per send
	maxSeg   int // payload bytes per datagram: path MTU − IP and UDP headers
	maxBytes int // payload bytes per send
}

// newGSOLimits returns the limits of a socket of the given family whose
// path MTU is mtu, on a kernel that takes maxSegs datagrams per send. The
// kernel refuses a segment that does not fit the MTU (EMSGSIZE): UDP GSO
// never fragments.
func newGSOLimits(maxSegs, mtu int, v6 bool) gsoLimits {
	hdr, maxBytes := 20+8, maxSendPayload4
	if v6 {
		hdr, maxBytes = 40+8, maxSendPayload6
	}
	if maxSegs < 2 || mtu <= hdr {
		return gsoLimits{}
	}
	return gsoLimits{maxSegs: maxSegs, maxSeg: mtu - hdr, maxBytes: maxBytes}
}

// run returns how many datagrams from the start of sizes (payload bytes,
// in send order) leave as one send: a run of equal sizes that ends at the
// limits or with one shorter, non-empty datagram. 1 means a plain send:
// a lone datagram, an odd size, or one too large to segment. sizes must
// not be empty.
func (l gsoLimits) run(sizes []int32) int {
	seg := int(sizes[0])
	if l.maxSegs < 2 || seg == 0 || seg > l.maxSeg {
		return 1
	}
	k, total := 1, seg
	for k < len(sizes) && k < l.maxSegs {
		n := int(sizes[k])
		// An empty datagram cannot end a run: the kernel would not
		// count it as a segment, and it would vanish.
		if n > seg || n == 0 || total+n > l.maxBytes {
			break
		}
		k++
		total += n
		if n < seg {
			break
		}
	}
	return k
}

// refusesGSO reports whether errno, the result of a UDP_SEGMENT send, means
// the kernel refused the segmentation rather than the send: EIO where the
// device lacks checksum offload (before Linux 6.11, commit 10154dbded6d
// "udp: Allow GSO transmit from devices with no checksum offload") or the
// route uses IPsec; EINVAL for too many segments, checksums switched off or
// a segment that does not fit the route's MTU with its headers; EMSGSIZE
// for one that does not fit the path MTU. The datagrams are then sent again
// one by one.
func refusesGSO(errno syscall.Errno) bool {
	return errno == syscall.EIO || errno == syscall.EINVAL || errno == syscall.EMSGSIZE
}

// afterRefusal returns the limits of a socket whose UDP_SEGMENT send of
// seg-byte datagrams the kernel refused, given its interface's MTU read
// again (0 when unknown), and whether GSO is now off on the socket for good.
// An MTU that shrank below the segment keeps GSO for the sizes that still
// fit; any other refusal switches it off.
func (l gsoLimits) afterRefusal(seg, mtu int, v6 bool) (gsoLimits, bool) {
	if mtu > 0 {
		if nl := newGSOLimits(l.maxSegs, mtu, v6); seg > nl.maxSeg && nl.maxSegs > 0 {
			return nl, false
		}
	}
	return gsoLimits{}, true
}

// setGSO sets e's UDP_SEGMENT limits from its MTU, for a kernel that takes
// segs datagrams per send; a raw socket, and one on which the kernel
// refused GSO for good, send one datagram per send.
func (e *egress) setGSO(segs int) {
	if e.key.Raw || e.gsoOff {
		e.gso = gsoLimits{}
		return
	}
	e.gso = newGSOLimits(segs, e.mtu, e.key.V6)
}
