package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/filering/filering/segment"
)

// recordWriter writes records in one of the output formats:
//
//   - lines: the payload and a newline;
//   - json: JSON Lines, {"seq":N,"time":"RFC 3339, UTC, 9 fractional digits","data":"..."},
//     with "data_b64" (standard base64) in place of "data" when the payload is not
//     valid UTF-8;
//   - raw: the frames format `produce --input frames` reads: a 4-byte little-endian
//     length, then the payload.
type recordWriter struct {
	w      *bufio.Writer
	format string
	buf    []byte
}

var formats = []string{"lines", "json", "raw"}

func newRecordWriter(w io.Writer, format string) (*recordWriter, error) {
	for _, f := range formats {
		if f == format {
			return &recordWriter{w: bufio.NewWriterSize(w, 64<<10), format: format}, nil
		}
	}
	return nil, usagef("--format %q: want lines, json or raw", format)
}

func (rw *recordWriter) write(r segment.Record) error {
	b := rw.buf[:0]
	switch rw.format {
	case "lines":
		b = append(append(b, r.Data...), '\n')
	case "raw":
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Data)))
		b = append(b, r.Data...)
	case "json":
		b = appendJSON(b, r)
	}
	rw.buf = b
	_, err := rw.w.Write(b)
	return err
}

func (rw *recordWriter) flush() error { return rw.w.Flush() }

// timeLayout is RFC 3339 with exactly nine fractional digits.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func appendJSON(b []byte, r segment.Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = time.Unix(0, r.Time).UTC().AppendFormat(b, timeLayout)
	if utf8.Valid(r.Data) {
		b = append(b, `","data":`...)
		b = appendJSONString(b, r.Data)
	} else {
		b = append(b, `","data_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Data)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s, valid UTF-8, as a JSON string. It escapes only what JSON
// requires: the quote, the backslash and control characters (\n \r \t \b \f by name,
// others as \u00XX); everything else is written as it is.
func appendJSONString(b, s []byte) []byte {
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
