package recordio

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/filering/filering/segment"
)

// The output formats.
const (
	// Lines is the payload and a newline. A payload holding newlines reads back as
	// several records.
	Lines = "lines"
	// JSON is JSON Lines, one object a record:
	// {"seq":N,"time":"RFC 3339, UTC, 9 fractional digits","data":"..."}, with
	// "data_b64" (standard base64, padded) in place of "data" when the payload is not
	// valid UTF-8. See AppendJSON.
	JSON = "json"
	// Raw is the frames format `filering produce --input frames` reads: a 4-byte
	// little-endian length, then the payload.
	Raw = "raw"
)

// ValidFormat reports whether name is one of the output formats: Lines, JSON or Raw.
func ValidFormat(name string) bool {
	return name == Lines || name == JSON || name == Raw
}

// Writer writes records in one of the output formats, buffered: call Flush before the
// output is needed (before waiting for more records, before exiting).
type Writer struct {
	w      *bufio.Writer
	format string
	buf    []byte
}

// NewWriter returns a Writer of format (Lines, JSON or Raw) to w, with a 64 KiB buffer.
func NewWriter(w io.Writer, format string) (*Writer, error) {
	if !ValidFormat(format) {
		return nil, fmt.Errorf("recordio: unknown format %q: want lines, json or raw", format)
	}
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), format: format}, nil
}

// WriteRecord writes one record.
func (rw *Writer) WriteRecord(r segment.Record) error {
	b := rw.buf[:0]
	switch rw.format {
	case Lines:
		b = append(append(b, r.Data...), '\n')
	case Raw:
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Data)))
		b = append(b, r.Data...)
	case JSON:
		b = AppendJSON(b, r)
	}
	rw.buf = b
	_, err := rw.w.Write(b)
	return err
}

// Flush writes what the buffer holds.
func (rw *Writer) Flush() error { return rw.w.Flush() }

// timeLayout is RFC 3339 with exactly nine fractional digits.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends the JSON Lines line of r, newline included:
// {"seq":N,"time":"2006-01-02T15:04:05.000000000Z","data":"..."}, the time in UTC with
// nine fractional digits, the payload escaped as AppendJSONString does, or
// "data_b64":"..." (standard base64, padded) when the payload is not valid UTF-8.
func AppendJSON(b []byte, r segment.Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = time.Unix(0, r.Time).UTC().AppendFormat(b, timeLayout)
	if utf8.Valid(r.Data) {
		b = append(b, `","data":`...)
		b = AppendJSONString(b, r.Data)
	} else {
		b = append(b, `","data_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Data)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// AppendJSONString appends s, valid UTF-8, as a JSON string. It escapes only what JSON
// requires: the quote, the backslash and control characters (\n \r \t \b \f by name,
// others as \u00XX); everything else is written as it is. The caller makes s valid
// UTF-8 first (bytes.ToValidUTF8) when it may not be.
func AppendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
