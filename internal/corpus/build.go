package corpus

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
)

// The layout is written here from docs/FORMAT.md alone, not with package segment, so
// that the corpus checks the Go code rather than sharing its mistakes.

const (
	segSize    = 4096 // every ring of the corpus has 4 KiB segments, but those with indexes
	headerSize = 64
	recHeader  = 24
	maxPayload = segSize - headerSize - recHeader
	t0         = int64(1700000000123456789) // a record time: 2023-11-14T22:13:20.123456789Z
)

var le = binary.LittleEndian

func align8(n int) int { return (n + 7) &^ 7 }

func segName(n uint64) string { return fmt.Sprintf("%016d.seg", n) }

// header returns a 64-byte segment header.
func header(size int64, number, first uint64, created int64, sealed, committed uint64) []byte {
	b := make([]byte, headerSize)
	copy(b, "FILERSEG")
	le.PutUint32(b[8:], 1)
	le.PutUint64(b[16:], uint64(size))
	le.PutUint64(b[24:], number)
	le.PutUint64(b[32:], first)
	le.PutUint64(b[40:], uint64(created))
	le.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:48]))
	le.PutUint64(b[48:], sealed)
	le.PutUint64(b[56:], committed)
	return b
}

// putRecord writes r at off and returns the offset of the next record.
func putRecord(b []byte, off int, r Record) int {
	size := recHeader + len(r.Data)
	le.PutUint64(b[off+8:], r.Seq)
	le.PutUint64(b[off+16:], uint64(r.Time))
	copy(b[off+24:], r.Data)
	le.PutUint32(b[off:], uint32(size))
	le.PutUint32(b[off+4:], crc32.ChecksumIEEE(b[off+8:off+size]))
	return off + align8(size)
}

// payload is the default payload of record seq: sensor-style readings, with a longer
// event now and then so that records differ in size.
func payload(seq uint64) []byte {
	if seq%5 == 0 {
		return fmt.Appendf(nil, "event %d: door %d opened", seq, seq%3)
	}
	return fmt.Appendf(nil, "%d.%03d", 20+seq%7, seq*37%1000)
}

// timeOf is the default time of record seq.
func timeOf(seq uint64) int64 { return t0 + int64(seq%1000000)*1250000 }

// gen returns n records with the default payloads and times, from sequence first.
func gen(first uint64, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		s := first + uint64(i)
		out[i] = Record{Seq: s, Time: timeOf(s), Data: payload(s)}
	}
	return out
}

// withPayloads returns records carrying the given payloads, from sequence first.
func withPayloads(first uint64, ps ...[]byte) []Record {
	out := make([]Record, len(ps))
	for i, p := range ps {
		s := first + uint64(i)
		out[i] = Record{Seq: s, Time: timeOf(s), Data: p}
	}
	return out
}

func str(s string) *string { return &s }

func at(o int) *int64 {
	v := int64(o)
	return &v
}

// ring builds one case.
type ring struct {
	name, desc string
	segSize    int // 0 for segSize
	segMax     int
	gen        uint64
	segs       []*seg
	files      map[string][]byte // files other than listed segments and the manifest
	manifest   []byte            // replaces the generated manifest when set
	noManifest bool              // no manifest file at all
	noRing     bool              // no ring/ directory at all (git keeps no empty directory)
	setup      []Step
	errs       []Error // errors not tied to a segment (manifest); any makes the read fail whole
	runs       []runSpec
}

type runSpec struct {
	format string // "" for no --format option (lines)
	last   int
	from   uint64
	// want, when set, is what the run delivers and reports instead of what the listed
	// segments' deliver and err say: a read through an index does not read damage
	// before its start.
	want *expect
}

// expect is what one run delivers, before its selection, and the errors it reports.
type expect struct {
	recs []Record
	errs []Error
}

func newRing(name, desc string) *ring {
	return &ring{name: name, desc: desc, segMax: 16, gen: 1, files: map[string][]byte{}}
}

// seg is one segment of a ring, as written and as listed.
type seg struct {
	r        *ring
	num      uint64
	first    uint64
	recs     []Record
	offs     []int // offset of each record
	end      int   // offset just past the last record
	buf      []byte
	file     string // name the bytes are stored under; "" for none (missing)
	listed   bool
	sealed   bool    // listed sealed
	lastSeq  *uint64 // manifest last_seq, when not the true one
	deliver  int     // how many of recs a reader delivers
	err      *Error  // the error a reader reports for this segment
	override []byte  // file content when not buf (wrong size)
	idx      []byte  // the segment's index file, N.idx; nil for none
}

// add appends a listed segment holding recs (which must carry first, first+1, ...),
// sealed or hot both in its header and in the manifest, committed word at the end of
// its records.
func (r *ring) add(num, first uint64, recs []Record, sealed bool) *seg {
	size := r.size()
	s := &seg{r: r, num: num, first: first, recs: recs, buf: make([]byte, size),
		file: segName(num), listed: true, sealed: sealed, deliver: len(recs)}
	off := headerSize
	for i, rec := range recs {
		if rec.Seq != first+uint64(i) {
			panic(fmt.Sprintf("%s: segment %d: record %d has sequence %d", r.name, num, i, rec.Seq))
		}
		if off+align8(recHeader+len(rec.Data)) > size {
			panic(fmt.Sprintf("%s: segment %d: record %d does not fit", r.name, num, i))
		}
		s.offs = append(s.offs, off)
		off = putRecord(s.buf, off, rec)
	}
	s.end = off
	sw := uint64(0)
	if sealed {
		sw = 1
	}
	copy(s.buf, header(int64(size), num, first, t0-int64(num), sw, uint64(off)))
	r.segs = append(r.segs, s)
	return s
}

// sealedSeg and hotSeg add segments of records from gen.
func (r *ring) sealedSeg(num, first uint64, n int) *seg {
	return r.add(num, first, gen(first, n), true)
}
func (r *ring) hotSeg(num, first uint64, n int) *seg { return r.add(num, first, gen(first, n), false) }

// size is the ring's segment size.
func (r *ring) size() int {
	if r.segSize != 0 {
		return r.segSize
	}
	return segSize
}

// index gives the segment an index with blocks of block bytes whose entries are those
// a producer writes for its records (docs/FORMAT.md, "The segment index"): entry k is
// the first record at or after k*block, 0 when there is none.
func (s *seg) index(block int) *seg {
	size := len(s.buf)
	k := (size - 1) / block
	b := make([]byte, headerSize+8*k)
	copy(b, "FILERIDX")
	le.PutUint32(b[8:], 1)
	le.PutUint64(b[16:], s.num)
	le.PutUint64(b[24:], uint64(size))
	le.PutUint32(b[32:], uint32(block))
	le.PutUint32(b[36:], uint32(k))
	le.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:40]))
	s.idx = b
	for j := 1; j <= k; j++ {
		for i, off := range s.offs {
			if off >= j*block {
				s.entry(j, off, uint64(i))
				break
			}
		}
	}
	return s
}

// entry sets entry k of the segment's index (index must have made it).
func (s *seg) entry(k, off int, index uint64) *seg {
	le.PutUint64(s.idx[headerSize+8*(k-1):], uint64(off)|index<<32)
	return s
}

// word stores v at off.
func (s *seg) word(off int, v uint64) *seg { le.PutUint64(s.buf[off:], v); return s }

// rehead rewrites the fixed header fields with a valid header CRC.
func (s *seg) rehead(size int64, number, first uint64) *seg {
	h := header(size, number, first, int64(le.Uint64(s.buf[40:])), 0, 0)
	copy(s.buf[12:48], h[12:48])
	return s
}

// segmentError says that a reader reports kind for the segment as a whole, at off
// (nil: no offset), and delivers none of its records.
func (s *seg) segmentError(off *int64, kind string) *seg {
	s.deliver = 0
	s.err = &Error{File: str(s.file), Offset: off, Kind: kind}
	return s
}

// recordError says that a reader reports kind at off and delivers the first n records.
func (s *seg) recordError(n, off int, kind string) *seg {
	s.deliver = n
	s.err = &Error{File: str(s.file), Offset: at(off), Kind: kind}
	return s
}

// missing makes a listed segment's file absent (taken, or retired): readers skip it
// silently.
func (s *seg) missing() *seg { s.file, s.deliver = "", 0; return s }

// manifestText returns the manifest the producer would write for the listed segments.
func (r *ring) manifestText() string {
	var es []string
	for _, s := range r.segs {
		if !s.listed {
			continue
		}
		last := uint64(0)
		if s.sealed {
			last = s.first + uint64(len(s.recs)) - 1
		}
		if s.lastSeq != nil {
			last = *s.lastSeq
		}
		es = append(es, fmt.Sprintf(`{"name":"%s","first_seq":%d,"last_seq":%d,"sealed":%t}`, segName(s.num), s.first, last, s.sealed))
	}
	return fmt.Sprintf(`{"version":1,"segment_size":%d,"segments_max":%d,"generation":%d,"segments":[%s]}`+"\n",
		r.size(), r.segMax, r.gen, strings.Join(es, ","))
}

// run adds a run: format "" passes no --format (lines); last and from 0 pass nothing.
func (r *ring) run(format string, last int, from uint64) *ring {
	r.runs = append(r.runs, runSpec{format: format, last: last, from: from})
	return r
}

// selWant adds a JSON Lines run with a selection that delivers, before the selection,
// recs and reports errs, whatever the segments say.
func (r *ring) selWant(last int, from uint64, recs []Record, errs []Error) *ring {
	r.runs = append(r.runs, runSpec{FormatJSON, last, from, &expect{recs, errs}})
	return r
}

// json adds the whole-ring run in JSON Lines, the one every case has.
func (r *ring) json() *ring { return r.run(FormatJSON, 0, 0) }

// all adds the whole-ring run in every format, and the run with no option.
func (r *ring) all() *ring {
	return r.run("", 0, 0).run(FormatJSON, 0, 0).run(FormatLines, 0, 0).run(FormatRaw, 0, 0)
}

// sel adds a JSON Lines run with a selection.
func (r *ring) sel(last int, from uint64) *ring { return r.run(FormatJSON, last, from) }

func (r *ring) step(op, path, target, mode string) *ring {
	r.setup = append(r.setup, Step{Op: op, Path: path, Target: target, Mode: mode})
	return r
}

// build turns the ring into a Case.
func (r *ring) build() Case {
	c := Case{Name: r.name, Outputs: map[string][]byte{}}
	if !r.noRing {
		c.Ring = map[string][]byte{}
		for name, b := range r.files {
			c.Ring[name] = b
		}
		for _, s := range r.segs {
			if s.file == "" {
				continue
			}
			b := s.buf
			if s.override != nil {
				b = s.override
			}
			if _, dup := c.Ring[s.file]; dup {
				panic(r.name + ": two files named " + s.file)
			}
			c.Ring[s.file] = b
			if s.idx != nil {
				c.Ring[fmt.Sprintf("%016d.idx", s.num)] = s.idx
			}
		}
		if !r.noManifest {
			m := r.manifest
			if m == nil {
				m = []byte(r.manifestText())
			}
			c.Ring["manifest"] = m
		}
	}
	// What a reader delivers and reports, in the order of the manifest.
	var recs []Record
	errs := slices.Clone(r.errs)
	if len(r.errs) == 0 {
		for _, s := range r.segs {
			if !s.listed {
				continue
			}
			recs = append(recs, s.recs[:s.deliver]...)
			if s.err != nil {
				errs = append(errs, *s.err)
			}
		}
	}
	if errs == nil {
		errs = []Error{}
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			panic(fmt.Sprintf("%s: delivered sequence %d after %d", r.name, recs[i].Seq, recs[i-1].Seq))
		}
	}
	setup := r.setup
	if setup == nil {
		setup = []Step{}
	}
	c.Spec = Spec{Description: r.desc, Setup: setup}
	for _, rs := range r.runs {
		var args []string
		var name []string
		if rs.from > 0 {
			args = append(args, "--from", fmt.Sprint(rs.from))
			name = append(name, fmt.Sprintf("from-%d", rs.from))
		}
		if rs.last > 0 {
			args = append(args, "--last", fmt.Sprint(rs.last))
			name = append(name, fmt.Sprintf("last-%d", rs.last))
		}
		format := rs.format
		if format != "" {
			args = append(args, "--format", format)
		} else {
			format = FormatLines
		}
		if len(name) == 0 {
			name = []string{"cat"}
		}
		file := strings.Join(name, "-") + map[string]string{FormatJSON: ".jsonl", FormatLines: ".lines", FormatRaw: ".raw"}[format]
		recs, errs := recs, errs
		if rs.want != nil {
			recs, errs = rs.want.recs, rs.want.errs
			if errs == nil {
				errs = []Error{}
			}
		}
		exit := 0
		if len(errs) > 0 {
			exit = 1
		}
		out, err := Format(Select(recs, rs.last, rs.from), format)
		if err != nil {
			panic(err)
		}
		if prev, ok := c.Outputs[file]; ok && !bytes.Equal(prev, out) {
			panic(r.name + ": two different outputs named " + file)
		}
		c.Outputs[file] = out
		if args == nil {
			args = []string{}
		}
		c.Spec.Runs = append(c.Spec.Runs, Run{Args: args, Stdout: file, Exit: exit, Errors: errs})
	}
	if len(c.Spec.Runs) == 0 {
		panic(r.name + ": no run")
	}
	return c
}

// Select applies a selection to the records a reader delivers: --from keeps sequence
// numbers >= from, then --last keeps the last n of those (counting records).
func Select(recs []Record, last int, from uint64) []Record {
	var out []Record
	for _, r := range recs {
		if r.Seq >= from {
			out = append(out, r)
		}
	}
	if last > 0 && len(out) > last {
		out = out[len(out)-last:]
	}
	return out
}
