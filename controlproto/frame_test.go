package controlproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// header returns a 4-byte big-endian length prefix.
func header(n uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, n)
}

// frame returns body with its length prefix.
func frame(body string) []byte {
	return append(header(uint32(len(body))), body...)
}

func TestAppendFrame(t *testing.T) {
	got, err := AppendFrame([]byte("x"), WorkerCommand{Type: WRemoveRule, ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("x"), frame(`{"type":"RemoveRule","id":"a"}`)...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AppendFrame (-want +got):\n%s", diff)
	}
}

func TestAppendFrameTooLarge(t *testing.T) {
	dst := []byte("keep")
	got, err := AppendFrame(dst, strings.Repeat("a", MaxFrameSize))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("AppendFrame of %d+2 bytes: err = %v, want ErrFrameTooLarge", MaxFrameSize, err)
	}
	if string(got) != "keep" {
		t.Errorf("AppendFrame changed dst on error: %q", got)
	}
}

func TestAppendFrameUnencodable(t *testing.T) {
	if _, err := AppendFrame(nil, func() {}); err == nil {
		t.Fatal("AppendFrame(func) succeeded")
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, WorkerCommand{Type: WShutdown}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(frame(`{"type":"Shutdown"}`), buf.Bytes()); diff != "" {
		t.Errorf("WriteFrame (-want +got):\n%s", diff)
	}
	if err := WriteFrame(errWriter{}, WorkerCommand{Type: WShutdown}); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("WriteFrame to a failing writer: err = %v, want io.ErrClosedPipe", err)
	}
}

// readAll reads frames until an error and returns the bodies and the error.
func readAll(fr *FrameReader) ([]string, error) {
	var bodies []string
	for {
		body, err := fr.Next()
		if err != nil {
			return bodies, err
		}
		bodies = append(bodies, string(body))
	}
}

func TestFrameReader(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		stream  []byte
		limit   int
		want    []string
		wantErr error
	}{
		{name: "empty stream", stream: nil, wantErr: io.EOF},
		{name: "two frames", stream: cat(frame(`{"a":1}`), frame(`{}`)), want: []string{`{"a":1}`, `{}`}, wantErr: io.EOF},
		{name: "empty body", stream: frame(""), want: []string{""}, wantErr: io.EOF},
		{name: "partial header", stream: []byte{0, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "partial body", stream: cat(frame("ok"), header(10), []byte("abc")), want: []string{"ok"}, wantErr: io.ErrUnexpectedEOF},
		{name: "huge prefix", stream: header(0xffffffff), wantErr: ErrFrameTooLarge},
		{name: "one over limit", stream: cat(header(9), []byte("123456789")), limit: 8, wantErr: ErrFrameTooLarge},
		{name: "at limit", stream: frame("12345678"), limit: 8, want: []string{"12345678"}, wantErr: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := NewFrameReader(bytes.NewReader(tt.stream))
			if tt.limit > 0 {
				fr.limit = tt.limit
			}
			got, err := readAll(fr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("bodies (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFrameReaderSkipsOversizedFrame(t *testing.T) {
	stream := bytes.Join([][]byte{frame("a"), header(20), bytes.Repeat([]byte("x"), 20), frame("b")}, nil)
	fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(stream)))
	fr.limit = 10
	var got []string
	var tooLarge int
	for {
		body, err := fr.Next()
		if errors.Is(err, ErrFrameTooLarge) {
			tooLarge++
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(body))
	}
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
	if tooLarge != 1 {
		t.Errorf("ErrFrameTooLarge reported %d times, want 1", tooLarge)
	}
}

func TestFrameReaderLyingPrefixAllocatesWhatArrives(t *testing.T) {
	// A prefix just under the limit followed by a few bytes must not make
	// the reader allocate the announced 16 MiB.
	stream := append(header(MaxFrameSize), "short"...)
	fr := NewFrameReader(bytes.NewReader(stream))
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if c := cap(fr.buf); c > 64<<10 {
		t.Errorf("buffer grew to %d bytes for 5 bytes received", c)
	}
}

// feedAll feeds stream to d in chunks of size chunk, draining Next after
// each, and returns the bodies, the errors, and the largest buffer seen.
func feedAll(d *FrameDecoder, stream []byte, chunk int) (bodies []string, errs []error, maxCap int) {
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		d.Feed(stream[:n])
		stream = stream[n:]
		for {
			body, ok, err := d.Next()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !ok {
				break
			}
			bodies = append(bodies, string(body))
		}
		maxCap = max(maxCap, cap(d.buf))
	}
	return bodies, errs, maxCap
}

func TestFrameDecoder(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name        string
		stream      []byte
		limit       int
		want        []string
		wantTooBig  int
		wantPartial bool
	}{
		{name: "nothing", stream: nil},
		{name: "two frames", stream: cat(frame(`{"a":1}`), frame(`{}`)), want: []string{`{"a":1}`, `{}`}},
		{name: "empty body", stream: frame(""), want: []string{""}},
		{name: "partial header", stream: []byte{0, 0, 0}, wantPartial: true},
		{name: "partial body", stream: cat(frame("ok"), header(5), []byte("ab")), want: []string{"ok"}, wantPartial: true},
		{name: "oversized frame skipped", stream: cat(frame("a"), header(9), []byte("123456789"), frame("b")), limit: 8, want: []string{"a", "b"}, wantTooBig: 1},
		{name: "oversized frame cut short", stream: cat(frame("a"), header(9), []byte("12")), limit: 8, want: []string{"a"}, wantTooBig: 1, wantPartial: true},
		{name: "huge prefix", stream: cat(header(0xffffffff), []byte("garbage")), wantTooBig: 1, wantPartial: true},
		{name: "at limit", stream: frame("12345678"), limit: 8, want: []string{"12345678"}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, 4096} {
			t.Run(tt.name+"/chunk"+strconv.Itoa(chunk), func(t *testing.T) {
				d := NewFrameDecoder(tt.limit)
				got, errs, _ := feedAll(d, tt.stream, chunk)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("bodies (-want +got):\n%s", diff)
				}
				for _, err := range errs {
					if !errors.Is(err, ErrFrameTooLarge) {
						t.Errorf("unexpected error %v", err)
					}
				}
				if len(errs) != tt.wantTooBig {
					t.Errorf("%d errors, want %d ErrFrameTooLarge", len(errs), tt.wantTooBig)
				}
				if d.Partial() != tt.wantPartial {
					t.Errorf("Partial() = %v, want %v", d.Partial(), tt.wantPartial)
				}
			})
		}
	}
}

func TestFrameDecoderBoundedMemory(t *testing.T) {
	const limit, chunk = 1024, 256
	// Oversized prefixes followed by megabytes of junk, then a frame: the
	// junk is skipped as it is fed, never buffered.
	stream := append(header(4<<20), bytes.Repeat([]byte{0xff}, 4<<20)...)
	stream = append(stream, frame("after")...)
	d := NewFrameDecoder(limit)
	got, errs, maxCap := feedAll(d, stream, chunk)
	if diff := cmp.Diff([]string{"after"}, got); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrFrameTooLarge) {
		t.Errorf("errors = %v, want one ErrFrameTooLarge", errs)
	}
	if maxCap > 2*(limit+frameHeaderSize+chunk) {
		t.Errorf("buffer grew to %d bytes, want at most about one frame plus one chunk", maxCap)
	}
}

func TestFrameDecoderReusesBuffer(t *testing.T) {
	d := NewFrameDecoder(0)
	stream := bytes.Repeat(frame(`{"type":"AddRule"}`), 100)
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range [][]byte{stream[:50], stream[50:]} {
			d.Feed(b)
			for {
				_, ok, err := d.Next()
				if err != nil || !ok {
					break
				}
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per stream, want 0 once warmed up", allocs)
	}
}

func TestFrameDecoderReleasesLargeBuffer(t *testing.T) {
	d := NewFrameDecoder(0)
	big := frame(strings.Repeat("x", 2*retainLimit))
	d.Feed(big)
	if _, ok, err := d.Next(); !ok || err != nil {
		t.Fatalf("Next = ok %v, err %v", ok, err)
	}
	d.Feed(frame("small"))
	if c := cap(d.buf); c > retainLimit {
		t.Errorf("buffer of %d bytes kept after a large frame", c)
	}
}

func TestNewFrameDecoderLimit(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, MaxFrameSize}, {-1, MaxFrameSize}, {10, 10}, {MaxFrameSize + 1, MaxFrameSize}} {
		if got := NewFrameDecoder(tt.in).limit; got != tt.want {
			t.Errorf("NewFrameDecoder(%d).limit = %d, want %d", tt.in, got, tt.want)
		}
	}
}
