package controlproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// LineReader reads newline-terminated lines of at most a fixed length from
// a stream, such as requests on an operator connection. A longer line is
// reported once and the rest of it is discarded as it arrives, without
// buffering it, so the server can answer with an error and go on serving
// the connection. It is not safe for concurrent use.
type LineReader struct {
	br         *bufio.Reader
	limit      int
	line       []byte
	discarding bool // inside a line already reported as too long
}

// NewLineReader returns a reader of lines of at most limit bytes, newline
// excluded, from r; limit <= 0 means MaxRequestSize.
func NewLineReader(r io.Reader, limit int) *LineReader {
	return newLineReader(r, limit, 64<<10)
}

// newLineReader is NewLineReader with a read buffer of bufSize bytes; tests
// make it small so that lines span several reads.
func newLineReader(r io.Reader, limit, bufSize int) *LineReader {
	if limit <= 0 {
		limit = MaxRequestSize
	}
	return &LineReader{br: bufio.NewReaderSize(r, bufSize), limit: limit}
}

// Next returns the next line without its "\n" (or "\r\n"), valid until the
// next call. Blank lines are skipped. A last line without a newline is
// returned before io.EOF. A line longer than the limit returns tooLong with
// a nil line, once; the next call continues after that line. Errors are the
// underlying reader's, io.EOF at the end of the stream.
func (lr *LineReader) Next() (line []byte, tooLong bool, err error) {
	for {
		if lr.discarding {
			if err := lr.discard(); err != nil {
				return nil, false, err
			}
		}
		line, tooLong, err := lr.read()
		if err != nil || tooLong || len(line) > 0 {
			return line, tooLong, err
		}
	}
}

// read reads one line, possibly blank.
func (lr *LineReader) read() ([]byte, bool, error) {
	lr.line = lr.line[:0]
	for {
		frag, err := lr.br.ReadSlice('\n')
		complete := err == nil
		if complete {
			frag = frag[:len(frag)-1]
		}
		if len(lr.line)+len(frag) > lr.limit {
			lr.discarding = !complete
			return nil, true, nil
		}
		lr.line = append(lr.line, frag...)
		switch {
		case complete:
			return bytes.TrimSuffix(lr.line, []byte("\r")), false, nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF) && len(lr.line) > 0:
			return bytes.TrimSuffix(lr.line, []byte("\r")), false, nil
		default:
			return nil, false, err
		}
	}
}

// discard drops input up to and including the next newline.
func (lr *LineReader) discard() error {
	for {
		_, err := lr.br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == nil {
				lr.discarding = false
			}
			return err
		}
	}
}
