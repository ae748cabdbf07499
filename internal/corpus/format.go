package corpus

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Record is one record as a reader delivers it.
type Record struct {
	Seq  uint64
	Time int64 // ns since the Unix epoch; may be negative
	Data []byte
}

// Output formats of `filering cat` (CONTRACT-DECISIONS.md, "Output formats").
const (
	FormatLines = "lines"
	FormatJSON  = "json"
	FormatRaw   = "raw"
)

// Format returns records as `filering cat --format format` prints them. It is written
// from the contract, not from the binary's code, so that the expected outputs of the
// corpus do not inherit the binary's mistakes.
func Format(recs []Record, format string) ([]byte, error) {
	var b []byte
	for _, r := range recs {
		switch format {
		case FormatLines:
			b = append(append(b, r.Data...), '\n')
		case FormatRaw:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Data)))
			b = append(b, r.Data...)
		case FormatJSON:
			b = AppendJSON(b, r)
		default:
			return nil, fmt.Errorf("corpus: unknown format %q", format)
		}
	}
	return b, nil
}

// AppendJSON appends one JSON Lines line for r:
// {"seq":N,"time":"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ","data":"..."} and a newline, with
// "data_b64" (standard base64, padded) when the payload is not valid UTF-8.
func AppendJSON(b []byte, r Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = AppendTime(b, r.Time)
	// utf8.Valid is strict: it refuses surrogate code points, overlong forms and
	// anything above U+10FFFF, as the contract asks.
	if utf8.Valid(r.Data) {
		b = append(b, `","data":"`...)
		for _, c := range r.Data {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c == '\b':
				b = append(b, `\b`...)
			case c == '\f':
				b = append(b, `\f`...)
			case c < 0x20:
				b = fmt.Appendf(b, `\u%04x`, c)
			default:
				b = append(b, c)
			}
		}
	} else {
		b = append(b, `","data_b64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Data)
	}
	return append(b, "\"}\n"...)
}

// AppendTime appends ns (nanoseconds since 1970-01-01T00:00:00Z, any int64) as
// YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ in UTC. The calendar arithmetic is done here, on
// integers, rather than with package time, so that it is a second derivation.
func AppendTime(b []byte, ns int64) []byte {
	secs, frac := floorDiv(ns, 1e9)
	days, sod := floorDiv(secs, 86400)
	y, m, d := civil(days)
	return fmt.Appendf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", y, m, d, sod/3600, sod/60%60, sod%60, frac)
}

// floorDiv returns the quotient rounded towards minus infinity and the remainder
// (0 <= r < d) of n / d, for d > 0, without overflow for any n.
func floorDiv(n, d int64) (q, r int64) {
	q, r = n/d, n%d
	if r < 0 {
		q, r = q-1, r+d
	}
	return q, r
}

// civil returns the proleptic Gregorian date of the day days after 1970-01-01
// (Howard Hinnant's civil_from_days).
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era, doe := floorDiv(z, 146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
