package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"
	"runtime/debug"
)

// Record is one record read from a segment.
type Record struct {
	Seq  uint64 // sequence number
	Time int64  // ns since the Unix epoch, set by the producer
	Data []byte // payload; see Scanner.Record for how long it stays valid
}

// Scanner reads the records of one segment in order. It is shaped like bufio.Scanner:
//
//	s := segment.NewScanner(path, b, h)
//	for s.Next() {
//		r := s.Record()
//	}
//	if err := s.Err(); err != nil { ... }
//
// Next returning false with a nil Err is not the end of a hot segment: it means "no
// more records yet", and Next may be called again later to pick up records appended
// since. Done reports whether the segment can never hold another record.
//
// Next copies each record out of b before it checks the record's CRC, so the bytes it
// returns are the bytes it checked. Pass checks records in place and returns none of
// their bytes. A Scanner is not safe for concurrent use.
type Scanner struct {
	path   string
	b      []byte
	off    int
	next   uint64 // sequence number the next record must carry
	sealed bool   // the segment was seen sealed
	done   bool
	err    error
	rec    Record
	buf    []byte
	skim   bool // Skip is running: check framing and sequence only
	// checked and copied count records checked by Pass and copied by Next: see Checked.
	checked, copied int
}

// NewScanner returns a Scanner over the segment in b, whose header h the caller has
// parsed and checked (ParseHeader). path names the segment in errors. b is usually a
// read-only shared mapping of the file and must be exactly h.Size bytes long; a
// misaligned b is copied, which loses sight of later appends.
func NewScanner(path string, b []byte, h Header) *Scanner {
	s := &Scanner{path: path, b: b, off: HeaderSize, next: h.FirstSeq}
	if int64(len(b)) != h.Size {
		s.err = &CorruptionError{Path: path, Offset: 0,
			Err: fmt.Errorf("%w: file is %d bytes, header says %d", ErrHeader, len(b), h.Size)}
	}
	if !aligned(b) {
		c := make([]byte, len(b)+8)
		for i := 0; i < 8; i++ {
			if aligned(c[i:]) {
				c = c[i : i+len(b)]
				break
			}
		}
		copy(c, b)
		s.b = c
	}
	return s
}

// Seek positions the scanner at offset off, where the record with sequence number seq
// starts. Callers use it to resume a scan at a position an earlier Scanner reported
// (Offset and NextSeq); nothing is checked until the next call to Next.
func (s *Scanner) Seek(off int, seq uint64) {
	if off < HeaderSize || off%Align != 0 || off > len(s.b) {
		s.err = &CorruptionError{Path: s.path, Offset: int64(off),
			Err: fmt.Errorf("%w: cannot resume at offset %d", ErrRecordSize, off)}
		return
	}
	s.off, s.next = off, seq
}

// Next advances to the next committed record and reports whether there is one. It
// returns false at the end of the records committed so far, at the end of a sealed
// segment, and on corruption (see Err).
func (s *Scanner) Next() (ok bool) {
	if s.err != nil || s.done {
		return false
	}
	defer s.guard(&ok, debug.SetPanicOnFault(true))
	// A second pass happens only when the segment turns out to have been sealed after
	// the committed word was loaded: the record may have been written meanwhile.
	for pass := 0; pass < 2; pass++ {
		c, err := committed(s.b)
		if err != nil {
			s.err = &CorruptionError{Path: s.path, Offset: OffCommitted, Err: err}
			return false
		}
		if s.sealed && int64(s.off) >= c {
			s.done = true
			return false
		}
		var why error
		if s.off+8 > len(s.b) {
			why = nil
		} else if w := load64(s.b, s.off); w == 0 {
			why = ErrMissing
		} else if why = s.read(w); why == nil {
			return true
		}
		if s.off+8 <= len(s.b) && int64(s.off) < c {
			s.err = &CorruptionError{Path: s.path, Offset: int64(s.off), Err: why}
			return false
		}
		if s.sealed {
			break
		}
		sealed, err := Sealed(s.b)
		if err != nil {
			s.err = &CorruptionError{Path: s.path, Offset: OffSealed, Err: err}
			return false
		}
		if !sealed {
			return false // the end of what is committed so far
		}
		s.sealed = true
	}
	// Sealed, and nothing valid at s.off even with the final committed word.
	if c, _ := committed(s.b); int64(s.off) < c {
		s.err = &CorruptionError{Path: s.path, Offset: int64(s.off),
			Err: fmt.Errorf("%w: sealed segment ends before its committed word %d", ErrMissing, c)}
		return false
	}
	s.done = true
	return false
}

// read copies out and checks the record whose commit word w was loaded at s.off.
func (s *Scanner) read(w uint64) error {
	size, crc := int(uint32(w)), uint32(w>>32)
	if size < RecordHeaderSize || size > len(s.b)-s.off || RecordSpan(size-RecordHeaderSize) > len(s.b)-s.off {
		return fmt.Errorf("%w: %d", ErrRecordSize, size)
	}
	if s.skim {
		seq := binary.LittleEndian.Uint64(s.b[s.off+8:])
		if seq != s.next {
			return fmt.Errorf("%w: sequence %d, want %d", ErrSequence, seq, s.next)
		}
		s.rec = Record{Seq: seq}
		s.off += RecordSpan(size - RecordHeaderSize)
		s.next++
		return nil
	}
	// The record is copied after 8 zero bytes, which recordCRC uses to check it
	// faster. The buffer's first 8 bytes are never written.
	n := size - 8
	if cap(s.buf) < 8+n {
		s.buf = make([]byte, 8+n, max(8+n, 2*cap(s.buf)))
	}
	body := s.buf[8 : 8+n]
	copy(body, s.b[s.off+8:s.off+size])
	s.copied++
	if got := recordCRC(s.buf, 8, 8+n); got != crc {
		return fmt.Errorf("%w: computed %08x, stored %08x", ErrChecksum, got, crc)
	}
	seq := binary.LittleEndian.Uint64(body)
	if seq != s.next {
		return fmt.Errorf("%w: sequence %d, want %d", ErrSequence, seq, s.next)
	}
	s.rec = Record{Seq: seq, Time: int64(binary.LittleEndian.Uint64(body[8:])), Data: body[16:]}
	s.off += RecordSpan(size - RecordHeaderSize)
	s.next++
	return nil
}

// guard turns a memory fault while reading the mapping (the file was truncated under it)
// into an error instead of a crash, and restores the goroutine's fault setting to old.
// It must be deferred directly, with debug.SetPanicOnFault(true) as its argument.
func (s *Scanner) guard(ok *bool, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		if _, isRuntime := r.(runtime.Error); !isRuntime {
			panic(r)
		}
		s.err = &CorruptionError{Path: s.path, Offset: int64(s.off), Err: fmt.Errorf("%w: %v", ErrFault, r)}
		*ok = false
	}
}

// Skip advances over the next committed record like Next, but checks only its framing
// (size, bounds, sequence number), not its CRC, and copies nothing: it is for finding
// where records are without reading them. After Skip, Record holds only Seq. A record
// passed over this way that is torn or damaged is caught by the Next that reads it.
func (s *Scanner) Skip() bool {
	s.skim = true
	ok := s.Next()
	s.skim = false
	return ok
}

// Pass passes over the committed records ahead without delivering them. It checks each
// record as Next does (its size, its sequence number and its CRC), but computes the CRC
// in place, in b, and copies nothing: it is for finding where the records a reader wants
// start, and for checking the ones it passes over on the way, at the cost of reading
// them once. It writes the offset of each record it passes into offs, in order, and
// stops when offs is full, before a record that starts at or past offset until, before a
// record whose size word is above big, and before any record that Next would not
// deliver as it stands: at the end of the records committed so far, at the end of a
// sealed segment, and on damage. It reports nothing about that record: the Next called
// then reads it and settles what it is, the end of the records or damage at its offset,
// exactly as if Pass had not been called. Pass returns how many records it passed; after
// it, Record holds only the Seq of the last one. Its only error (Err) is a memory fault
// in the mapping.
//
// The records Pass checks are not delivered, so reading them in place is safe: a record
// a reader delivers is read again by Next, which copies it before it checks it.
func (s *Scanner) Pass(offs []int, until, big int) (n int) {
	if s.err != nil || s.done || len(offs) == 0 {
		return 0
	}
	ok := true
	defer s.guard(&ok, debug.SetPanicOnFault(true))
	b := s.b
	for n < len(offs) && s.off < until && s.off+8 <= len(b) {
		// The committed word as Next sees it: Next reports it when it is out of range,
		// and ends a sealed segment there.
		c := load64(b, OffCommitted)
		if c < HeaderSize || c > uint64(len(b)) || c%Align != 0 || s.sealed && uint64(s.off) >= c {
			break
		}
		w := load64(b, s.off)
		size := int(uint32(w))
		if size < RecordHeaderSize || size > big || size > len(b)-s.off || RecordSpan(size-RecordHeaderSize) > len(b)-s.off {
			break // a zero commit word too
		}
		if binary.LittleEndian.Uint64(b[s.off+8:]) != s.next {
			break
		}
		if crc32.Update(0, crcTable, b[s.off+8:s.off+size]) != uint32(w>>32) {
			break
		}
		offs[n] = s.off
		n++
		s.off += RecordSpan(size - RecordHeaderSize)
		s.next++
		s.checked++
	}
	if n > 0 {
		s.rec = Record{Seq: s.next - 1}
	}
	return n
}

// Checked returns how many records the Scanner has checked in place (Pass) and how many
// it has copied out of the segment to check and deliver them (Next). Tests use it to
// check that a reader copies only the records it delivers.
func (s *Scanner) Checked() (inPlace, copied int) { return s.checked, s.copied }

// Record returns the record Next advanced to. Data aliases a buffer owned by the Scanner
// and is valid only until the next call to Next; copy it to keep it.
func (s *Scanner) Record() Record { return s.rec }

// Current returns the Scanner's own copy of the record Next advanced to, which its next
// call to Next, Skip or Pass overwrites: for a reader that hands records on without
// copying the Record (a copy of a struct just written field by field stalls the
// processor; a follower delivering 64-byte records spent a sixth of its time there).
func (s *Scanner) Current() *Record { return &s.rec }

// Err returns the first error the Scanner met: a *CorruptionError.
func (s *Scanner) Err() error { return s.err }

// Done reports whether the segment is sealed and every record in it was read: no more
// records will ever appear in it.
func (s *Scanner) Done() bool { return s.done }

// Offset returns the offset at which the next record is expected.
func (s *Scanner) Offset() int { return s.off }

// NextSeq returns the sequence number the next record will carry.
func (s *Scanner) NextSeq() uint64 { return s.next }

// Valid scans the segment in b from its first record and returns the offset just past
// the last valid record and the number of valid records, stopping at the first zero,
// malformed, mis-sequenced or failing record without judging it. A producer uses it to
// recover a segment after a crash.
func Valid(b []byte, h Header) (end int, n uint64) {
	s := NewScanner("", b, h)
	for s.validNext() {
		n++
	}
	return s.off, n
}

// validNext is Next without the committed-word checks: it reads while records are valid.
func (s *Scanner) validNext() (ok bool) {
	if s.err != nil || s.off+8 > len(s.b) {
		return false
	}
	defer s.guard(&ok, debug.SetPanicOnFault(true))
	w := load64(s.b, s.off)
	return w != 0 && s.read(w) == nil
}
