package pcap

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/mcrelay/mcr/internal/inetsum"
)

// LinkTypeRaw is LINKTYPE_RAW: each packet starts with its IPv4 or IPv6
// header.
const LinkTypeRaw = 101

// MaxSnaplen is the snapshot length in the file header: no packet of a
// capture is longer. It is that of a whole IPv6 datagram with the largest
// UDP payload.
const MaxSnaplen = 40 + 8 + 65535

// Writer writes packets to a pcap file. It buffers nothing: each call is
// one Write of the underlying writer (wrap it in a bufio.Writer to batch).
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes the file header to w and returns a Writer of raw IP
// packets.
func NewWriter(w io.Writer) (*Writer, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(h[4:], 2)          // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	// thiszone and sigfigs are 0.
	binary.LittleEndian.PutUint32(h[16:], MaxSnaplen)
	binary.LittleEndian.PutUint32(h[20:], LinkTypeRaw)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WritePacket writes one packet seen at t: data is what was captured of
// it, origLen its length on the wire (at least len(data)).
func (w *Writer) WritePacket(t time.Time, data []byte, origLen int) error {
	if len(data) > MaxSnaplen {
		data = data[:MaxSnaplen]
	}
	origLen = max(origLen, len(data))
	w.buf = binary.LittleEndian.AppendUint32(w.buf[:0], uint32(t.Unix()))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(t.Nanosecond()/1000))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(data)))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(origLen))
	w.buf = append(w.buf, data...)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write pcap packet: %w", err)
	}
	return nil
}

// AppendUDP appends to b a UDP datagram from src to dst whose payload is
// size bytes long, of which payload holds the first len(payload) (a
// capture may keep only the start), and returns it with the length the
// whole datagram has. The headers are rebuilt: TTL or hop limit 64, no IP
// options; the IPv4 header has its checksum, the UDP header has one when
// the whole payload is there (IPv4 without it has checksum 0, "none";
// an IPv6 datagram cut short has one over what is there). src and dst
// must be of one family; IPv4-mapped addresses count as IPv4.
func AppendUDP(b []byte, src, dst netip.AddrPort, payload []byte, size int) (pkt []byte, origLen int) {
	size = max(size, len(payload))
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	udpLen := 8 + size
	start := len(b)
	v4 := d.Is4()
	if v4 {
		origLen = 20 + udpLen
		b = append(b, 0x45, 0, byte(origLen>>8), byte(origLen), 0, 0, 0x40, 0, 64, 17, 0, 0)
		sa, da := s.As4(), d.As4()
		if !s.Is4() {
			sa = [4]byte{}
		}
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
		binary.BigEndian.PutUint16(b[start+10:], inetsum.Checksum(inetsum.Add(0, b[start:start+20])))
	} else {
		origLen = 40 + udpLen
		b = append(b, 0x60, 0, 0, 0, byte(udpLen>>8), byte(udpLen), 17, 64)
		sa, da := s.As16(), d.As16()
		if !s.Is6() {
			sa = [16]byte{}
		}
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
	}
	u := len(b)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(udpLen))
	b = append(b, 0, 0)
	b = append(b, payload...)
	if !v4 || len(payload) == size {
		// The pseudo-header: addresses, protocol, UDP length.
		addrs := b[start+12 : start+20]
		if !v4 {
			addrs = b[start+8 : start+40]
		}
		c := inetsum.Add(inetsum.Add(0, addrs), []byte{0, 17, byte(udpLen >> 8), byte(udpLen)})
		cs := inetsum.Checksum(inetsum.Add(c, b[u:]))
		if cs == 0 {
			cs = 0xffff
		}
		binary.BigEndian.PutUint16(b[u+6:], cs)
	}
	return b, origLen
}
