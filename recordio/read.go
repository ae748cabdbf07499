package recordio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readChunk is how much ReadLines reads at a time, and the size of the buffer
// ReadFrames reads through.
const readChunk = 256 << 10

// ReadLines reads in to its end and hands fn its lines, without their newlines; a last
// line without a newline is a line too. It reads large chunks and hands fn all the
// complete lines of each at once, so that a burst of lines costs one call of fn (for
// publish.Writer.AppendBatch, no system call per line). The slices are valid only until
// fn returns. A line longer than a chunk grows the buffer to hold it.
//
// An error from fn ends it and is returned as it is; a read error is returned as
// "read NAME: ...", NAME being name (such as "standard input").
func ReadLines(in io.Reader, name string, fn func(lines [][]byte) error) error {
	buf := make([]byte, readChunk)
	var lines [][]byte
	have := 0
	for {
		n, err := in.Read(buf[have:])
		have += n
		lines = lines[:0]
		start := 0
		for {
			i := bytes.IndexByte(buf[start:have], '\n')
			if i < 0 {
				break
			}
			lines = append(lines, buf[start:start+i])
			start += i + 1
		}
		if len(lines) > 0 {
			if ferr := fn(lines); ferr != nil {
				return ferr
			}
		}
		have = copy(buf, buf[start:have])
		if have == len(buf) {
			// One line longer than the buffer: make room for the rest of it.
			buf = append(buf, make([]byte, len(buf))...)
		}
		switch {
		case errors.Is(err, io.EOF):
			if have > 0 {
				return fn([][]byte{buf[:have]})
			}
			return nil
		case err != nil:
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// ReadFrames reads the frames of in to its end and hands fn each payload, one at a time
// (as a batch of one, valid until fn returns). A frame longer than limit, or a frame cut
// short, ends it with an error that names the frame's byte offset (see FrameReader);
// an error from fn ends it and is returned as it is. A clean end of input returns nil.
func ReadFrames(in io.Reader, name string, limit int, fn func(frames [][]byte) error) error {
	fr := NewFrameReader(in, name, limit)
	for {
		p, err := fr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := fn([][]byte{p}); err != nil {
			return err
		}
	}
}

// FrameReader decodes the frames format: a 4-byte little-endian length, then that many
// bytes. A length beyond its limit is an error naming the byte offset of the frame, so
// that the records before it are kept and the user knows where the input went wrong.
type FrameReader struct {
	in    *bufio.Reader
	name  string
	limit int
	off   int64
	buf   []byte
}

// NewFrameReader returns a reader of the frames of in, which it reads through a
// 256 KiB buffer unless in is a *bufio.Reader already. name (such as "standard input")
// starts its error messages; limit is the longest payload accepted.
func NewFrameReader(in io.Reader, name string, limit int) *FrameReader {
	br, ok := in.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(in, readChunk)
	}
	return &FrameReader{in: br, name: name, limit: limit}
}

// Next returns the next frame's payload, valid until the next call; io.EOF at a clean
// end of input, between two frames.
func (fr *FrameReader) Next() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(fr.in, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%s: truncated frame header at byte offset %d", fr.name, fr.off)
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if uint64(n) > uint64(fr.limit) {
		return nil, fmt.Errorf("%s: frame at byte offset %d has length %d, more than the %d bytes a segment holds", fr.name, fr.off, n, fr.limit)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.in, p); err != nil {
		return nil, fmt.Errorf("%s: truncated frame at byte offset %d: want %d bytes", fr.name, fr.off, n)
	}
	fr.off += 4 + int64(n)
	return p, nil
}
