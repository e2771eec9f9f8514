package controlproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// frameHeaderSize is the width of a frame's length prefix.
const frameHeaderSize = 4

// ErrFrameTooLarge is the protocol error of a frame whose length prefix
// exceeds the reader's limit. Readers report it without allocating the
// announced length and then skip that many bytes, so the frames after it
// are read normally.
var ErrFrameTooLarge = errors.New("frame too large")

// AppendFrame appends v as one worker-protocol frame to dst: its JSON
// encoding preceded by the encoding's length as 4 bytes big-endian. It fails,
// returning dst unchanged, when v does not encode or the encoding is longer
// than MaxFrameSize.
func AppendFrame(dst []byte, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("encode frame: %w", err)
	}
	if len(body) > MaxFrameSize {
		return dst, fmt.Errorf("encode frame: %d bytes, limit %d: %w", len(body), MaxFrameSize, ErrFrameTooLarge)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...), nil
}

// WriteFrame writes v as one frame (see AppendFrame) with a single Write, so
// frames from one writer never interleave on a pipe or socket.
func WriteFrame(w io.Writer, v any) error {
	frame, err := AppendFrame(nil, v)
	if err != nil {
		return err
	}
	if _, err := w.Write(frame); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// tooLarge is the error both readers return for a length prefix of n.
func tooLarge(n uint32, limit int) error {
	return fmt.Errorf("read frame: length %d, limit %d: %w", n, limit, ErrFrameTooLarge)
}

// retainLimit is the largest buffer a reader keeps once it is drained: small
// frames reuse one allocation, and a rare large SyncRules does not pin
// megabytes for the life of the process.
const retainLimit = 1 << 20

// FrameReader reads frames from a blocking io.Reader, such as the
// supervisor's end of a stats pipe. It is not safe for concurrent use.
type FrameReader struct {
	r     io.Reader
	limit int
	hdr   [frameHeaderSize]byte
	buf   []byte
	skip  int64 // body bytes of an oversized frame still to discard
}

// NewFrameReader returns a reader of frames from r with bodies of at most
// MaxFrameSize bytes.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r, limit: MaxFrameSize}
}

// Next reads the next frame and returns its body, which stays valid until
// the next call. It returns io.EOF when the stream ends between frames,
// io.ErrUnexpectedEOF when it ends inside one, and an error wrapping
// ErrFrameTooLarge for a length prefix over the limit; the body of that frame
// is discarded, without buffering it, by the following call. A body's memory
// grows with the bytes actually received, so a lying prefix under the limit
// costs no more than the data sent.
func (fr *FrameReader) Next() ([]byte, error) {
	if fr.skip > 0 {
		n, err := io.CopyN(io.Discard, fr.r, fr.skip)
		fr.skip -= n
		if err != nil {
			return nil, fmt.Errorf("skip oversized frame: %w", unexpected(err))
		}
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if uint64(n) > uint64(fr.limit) {
		fr.skip = int64(n)
		return nil, tooLarge(n, fr.limit)
	}
	if cap(fr.buf) > retainLimit && int(n) <= retainLimit {
		fr.buf = nil
	}
	return fr.readBody(int(n))
}

// readBody reads n bytes into fr.buf, growing it as data arrives.
func (fr *FrameReader) readBody(n int) ([]byte, error) {
	fr.buf = fr.buf[:0]
	for len(fr.buf) < n {
		if len(fr.buf) == cap(fr.buf) {
			grown := make([]byte, len(fr.buf), min(n, max(2*cap(fr.buf), 64<<10)))
			copy(grown, fr.buf)
			fr.buf = grown
		}
		end := min(n, cap(fr.buf))
		k, err := io.ReadFull(fr.r, fr.buf[len(fr.buf):end])
		fr.buf = fr.buf[:len(fr.buf)+k]
		if err != nil {
			return nil, fmt.Errorf("read frame body: %w", unexpected(err))
		}
	}
	return fr.buf, nil
}

// unexpected turns io.EOF inside a frame into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// FrameDecoder splits a byte stream into frames for an event loop that does
// its own reads (an io_uring READ, a non-blocking read): the loop passes each
// chunk it read to Feed and then calls Next until it reports no complete
// frame. Used that way, the decoder holds at most one incomplete frame plus
// one chunk, and reuses its buffer across frames. It never panics on hostile
// input and never allocates for a length prefix over its limit. It is not
// safe for concurrent use.
type FrameDecoder struct {
	limit int
	buf   []byte // buffered stream; buf[r:] is not yet consumed
	r     int
	skip  uint64 // body bytes of an oversized frame still to discard
}

// NewFrameDecoder returns a decoder of frames with bodies of at most limit
// bytes; limit <= 0 means MaxFrameSize. Limits above MaxFrameSize are
// lowered to it.
func NewFrameDecoder(limit int) *FrameDecoder {
	if limit <= 0 || limit > MaxFrameSize {
		limit = MaxFrameSize
	}
	return &FrameDecoder{limit: limit}
}

// Feed appends the bytes of p to the stream. The decoder copies them: p is
// the caller's again when Feed returns. A body returned by Next is invalid
// after Feed.
func (d *FrameDecoder) Feed(p []byte) {
	k := min(d.skip, uint64(len(p)))
	d.skip -= k
	p = p[k:]
	if len(p) == 0 {
		return
	}
	switch {
	case d.r == len(d.buf):
		if cap(d.buf) > retainLimit {
			d.buf = nil
		}
		d.buf, d.r = d.buf[:0], 0
	case d.r > 0 && len(d.buf)+len(p) > cap(d.buf):
		n := copy(d.buf, d.buf[d.r:])
		d.buf, d.r = d.buf[:n], 0
	}
	d.buf = append(d.buf, p...)
}

// Next returns the next complete frame's body, valid until the next call to
// Next or Feed. ok is false when no complete frame is buffered. An error
// wrapping ErrFrameTooLarge reports an oversized length prefix; the decoder
// then discards that frame's body as it is fed and carries on after it.
func (d *FrameDecoder) Next() (body []byte, ok bool, err error) {
	rest := d.buf[d.r:]
	if len(rest) < frameHeaderSize {
		return nil, false, nil
	}
	n := binary.BigEndian.Uint32(rest)
	if uint64(n) > uint64(d.limit) {
		d.r += frameHeaderSize
		rest = rest[frameHeaderSize:]
		buffered := min(uint64(len(rest)), uint64(n))
		d.r += int(buffered)
		d.skip = uint64(n) - buffered
		return nil, false, tooLarge(n, d.limit)
	}
	end := frameHeaderSize + int(n)
	if len(rest) < end {
		return nil, false, nil
	}
	d.r += end
	return rest[frameHeaderSize:end:end], true, nil
}

// Partial reports whether the stream fed so far ends inside a frame: when
// the peer closes the stream and Partial is true, the last frame was cut
// short (io.ErrUnexpectedEOF).
func (d *FrameDecoder) Partial() bool {
	return d.r < len(d.buf) || d.skip > 0
}
