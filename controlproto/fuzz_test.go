package controlproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Fuzz seeds run as ordinary tests; `go test -fuzz FuzzX` explores further.

// frameSeeds are byte streams for the frame fuzzers: well-formed, cut
// short, oversized and hostile.
func frameSeeds() [][]byte {
	cmd, _ := AppendFrame(nil, WorkerCommand{Type: WAddRule, Rule: &testRules(1)[0]})
	sync, _ := AppendFrame(nil, WorkerCommand{Type: WSyncRules, Rules: testRules(2), Hash: "0123456789abcdef", Part: 1, Parts: 2})
	return [][]byte{
		nil,
		frame(`{"type":"Shutdown"}`),
		append(cmd, sync...),
		cmd[:len(cmd)-1],
		{0, 0},
		header(0xffffffff),
		append(header(0x7fffffff), "junk"...),
		append(header(40), bytes.Repeat([]byte{'x'}, 40)...),
		append(frame(""), frame(`{"type":"RemoveRule","id":"a"}`)...),
	}
}

// decodeStream feeds stream to a decoder with the given limit in chunks and
// returns the bodies and how many frames were too large.
func decodeStream(t *testing.T, stream []byte, limit, chunk int) (bodies [][]byte, tooLarge int, d *FrameDecoder) {
	d = NewFrameDecoder(limit)
	for len(stream) > 0 {
		n := min(chunk, len(stream))
		d.Feed(stream[:n])
		stream = stream[n:]
		for {
			body, ok, err := d.Next()
			if err != nil {
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("Next: %v", err)
				}
				tooLarge++
				continue
			}
			if !ok {
				break
			}
			if len(body) > d.limit {
				t.Fatalf("body of %d bytes, limit %d", len(body), d.limit)
			}
			bodies = append(bodies, bytes.Clone(body))
		}
		if c := cap(d.buf); c > 2*(d.limit+frameHeaderSize+chunk)+64 {
			t.Fatalf("buffer of %d bytes with limit %d and chunks of %d", c, d.limit, chunk)
		}
	}
	return bodies, tooLarge, d
}

// FuzzFrameDecoder checks that hostile streams never panic, never yield a
// body over the limit and never grow the buffer past a frame plus a chunk;
// that any body that decodes as a WorkerCommand survives encode, decode,
// compare; and that commands built from the inputs round-trip exactly.
func FuzzFrameDecoder(f *testing.F) {
	for i, s := range frameSeeds() {
		f.Add(s, "market-a", uint16(i*7), uint16(i*100))
	}
	f.Fuzz(func(t *testing.T, stream []byte, id string, chunk, limit uint16) {
		bodies, _, _ := decodeStream(t, stream, int(limit)+1, int(chunk)+1)
		for _, body := range bodies {
			var first WorkerCommand
			if json.Unmarshal(body, &first) != nil {
				continue
			}
			again := roundTrip(t, &first, int(chunk)+1)
			if diff := cmp.Diff(first, again, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("decode, encode, decode changed the command (-first +again):\n%s", diff)
			}
		}

		if !utf8.ValidString(id) {
			return // JSON replaces invalid UTF-8; nothing to compare
		}
		want := WorkerCommand{Type: WSyncRules, ID: id, Hash: id, Part: int(chunk), Parts: int(limit),
			Rules: []WorkerRule{{InputIfIndex: len(stream), OutputIfIndex: []int{int(limit)}}}}
		want.Rules[0].Name = id
		if got := roundTrip(t, &want, int(chunk)+1); !cmp.Equal(want, got, cmpopts.EquateEmpty()) {
			t.Fatalf("round trip (-want +got):\n%s", cmp.Diff(want, got, cmpopts.EquateEmpty()))
		}
	})
}

// roundTrip encodes cmd as a frame between two others, decodes the stream
// in chunks and returns the middle command.
func roundTrip(t *testing.T, cmd *WorkerCommand, chunk int) WorkerCommand {
	t.Helper()
	stream, err := AppendFrame(nil, WorkerCommand{Type: WShutdown})
	if err != nil {
		t.Fatal(err)
	}
	if stream, err = AppendFrame(stream, cmd); err != nil {
		t.Fatal(err)
	}
	if stream, err = AppendFrame(stream, WorkerCommand{Type: WShutdown}); err != nil {
		t.Fatal(err)
	}
	bodies, tooLarge, d := decodeStream(t, stream, 0, chunk)
	if len(bodies) != 3 || tooLarge != 0 || d.Partial() {
		t.Fatalf("%d bodies, %d too large, partial %v; want 3, 0, false", len(bodies), tooLarge, d.Partial())
	}
	var got WorkerCommand
	if err := json.Unmarshal(bodies[1], &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// FuzzFrameReader checks the blocking reader against the incremental
// decoder: on any stream both yield the same bodies and oversized frames,
// and the reader ends with io.EOF exactly when the decoder is not inside a
// frame.
func FuzzFrameReader(f *testing.F) {
	for i, s := range frameSeeds() {
		f.Add(s, uint16(i*100))
	}
	f.Fuzz(func(t *testing.T, stream []byte, limit uint16) {
		fr := NewFrameReader(bytes.NewReader(stream))
		fr.limit = int(limit) + 1
		var bodies [][]byte
		var tooLarge int
		var end error
		for end == nil {
			body, err := fr.Next()
			switch {
			case errors.Is(err, ErrFrameTooLarge):
				tooLarge++
			case err != nil:
				end = err
			case len(body) > fr.limit:
				t.Fatalf("body of %d bytes, limit %d", len(body), fr.limit)
			default:
				bodies = append(bodies, bytes.Clone(body))
			}
		}
		wantBodies, wantTooLarge, d := decodeStream(t, stream, fr.limit, 4096)
		if diff := cmp.Diff(wantBodies, bodies, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("bodies (-decoder +reader):\n%s", diff)
		}
		if tooLarge != wantTooLarge {
			t.Fatalf("reader saw %d oversized frames, decoder %d", tooLarge, wantTooLarge)
		}
		wantEnd := io.EOF
		if d.Partial() {
			wantEnd = io.ErrUnexpectedEOF
		}
		if !errors.Is(end, wantEnd) {
			t.Fatalf("reader ended with %v, want %v", end, wantEnd)
		}
	})
}

// FuzzDecodeRequest checks that DecodeRequest never panics, fails only with
// invalid_argument, and that a decoded request encodes to a line that
// decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"command":"Ping"}`,
		`{"command":"AddRule","rule":` + validRule + `}`,
		`{"command":"AddRule","rule":{"input":{"interface":"eth0","group":"FF3E::1","port":5000,"source":"2001:db8::1"},"outputs":[{"interface":"eth1","group":"239.2.2.2","port":6000}]}}`,
		`{"command":"RemoveRule","id":"market-a"}`,
		`{"command":"LoadConfig","config":{"rules":[` + validRule + `]}}`,
		`{"command":"CheckConfig","config":{"rules":[]}}`,
		`{"command":"LoadConfig","config":{}}`,
		`{"command":"SaveConfig","path":"/etc/mcr.json"}`,
		`{"command":"SetLogLevel","level":"debug"}`,
		`{"command":"Ping","id":null}`,
		`{"command":"Ping"} x`,
		`{"command":"Foo"}`,
		`{"Command":"Ping"}`,
		`{"command":"Ping","command":"Ping"}`,
		`[1,2]`,
		`{"command":"\u00e9\ud800"}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, perr := DecodeRequest(line)
		if perr != nil {
			if perr.Code != CodeInvalidArgument || perr.Message == "" {
				t.Fatalf("error %+v, want invalid_argument with a message", perr)
			}
			return
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encode %+v: %v", req, err)
		}
		again, perr := DecodeRequest(enc)
		if perr != nil {
			t.Fatalf("re-decode %s: %v", enc, perr)
		}
		if diff := cmp.Diff(req, again); diff != "" {
			t.Fatalf("decode, encode, decode changed the request (-first +again):\n%s", diff)
		}
	})
}

// FuzzLineReader checks LineReader against a model: split at "\n", lines
// longer than the limit reported as too long, then "\r" trimmed and blank
// lines skipped.
func FuzzLineReader(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\r\n\n", "0123456789abcdef\nok\n", "x\r\r\n", "\n\n\nlong line here"} {
		f.Add([]byte(s), uint8(8), uint8(0))
	}
	f.Fuzz(func(t *testing.T, input []byte, limit, bufSize uint8) {
		lr := newLineReader(bytes.NewReader(input), int(limit)+1, int(bufSize)+16)
		var got []string
		for {
			line, tooLong, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if tooLong {
				got = append(got, "\x00TOO LONG")
				continue
			}
			if len(line) == 0 || len(line) > lr.limit || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("line %q breaks the contract (limit %d)", line, lr.limit)
			}
			got = append(got, string(line))
		}
		var want []string
		segments := bytes.Split(input, []byte("\n"))
		for _, seg := range segments {
			switch {
			case len(seg) > lr.limit:
				want = append(want, "\x00TOO LONG")
			case len(bytes.TrimSuffix(seg, []byte("\r"))) > 0:
				want = append(want, string(bytes.TrimSuffix(seg, []byte("\r"))))
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("lines (-model +got):\n%s", diff)
		}
	})
}
