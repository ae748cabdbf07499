package watch

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"unsafe"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// bigRecord is the size above which a cursor checks a record's CRC first, reading the
// file with pread in chunks of checkChunk bytes, before the Scanner copies the record out
// of the mapping: a record that fails its CRC, or that is only passed over, then costs no
// buffer of its size. (The Scanner copies every record it reads into a buffer as large as
// the record, before it checks the CRC; a damaged or hostile segment could otherwise cost
// a reader a buffer of up to the segment size, 1 GiB, for a record it never delivers.)
// Below it, a copy costs at most this much. A segment no larger than bigRecord (the
// default segment size is 2 MiB) holds no such record, and its records are not looked at
// twice.
const bigRecord = 8 << 20

// checkChunk is the size of the reads that check a large record.
const checkChunk = 1 << 20

// cursor reads the records of one open segment in order, as every reader here does: it
// wraps a segment.Scanner with the checks that need the manifest (a segment listed sealed
// holds exactly first_seq..last_seq), the check of large records before they are copied,
// and the View's windows. A cursor is not safe for concurrent use.
type cursor struct {
	seg  *openSegment
	sc   *segment.Scanner
	done bool  // the segment ends here (found without the Scanner; see big)
	err  error // damage: a *segment.CorruptionError
	buf  []byte
	// small is the offset up to which the records ahead were seen, by one look at
	// their commit words, to be committed and no larger than bigRecord: the records
	// starting below it need no check before the Scanner copies them.
	small int
	// crc is the check of the large record at crc.off, kept across calls: a check cut
	// short by ctx goes on where it stopped, and a record found failing is not read
	// again at every look while its commit word stays the same.
	crc bigCRC
	// ctx, when not nil, is looked at while a large record is checked: next then
	// returns false with interrupted set, and may be called again.
	ctx         context.Context
	interrupted bool
}

// bigCRC is the state of the CRC check of one large record.
type bigCRC struct {
	off  int    // the record's offset
	w    uint64 // its commit word
	pos  int64  // the file offset checked up to
	sum  uint32 // the CRC so far
	done bool   // pos reached the record's end
}

// newCursor maps seg, if needed, and returns a cursor at its first record. The error is
// damage (the file shrank since it was checked).
func newCursor(seg *openSegment) (*cursor, error) {
	if err := seg.mapped(); err != nil {
		return nil, err
	}
	seg.v.Advance(segment.HeaderSize) // before the first read of the mapping
	return &cursor{seg: seg, sc: seg.scanner()}, nil
}

// seek positions the cursor at offset off, where the record with sequence seq starts, as
// an earlier scan of the same segment found it.
func (c *cursor) seek(off int, seq uint64) {
	c.seg.v.Advance(off)
	c.sc.Seek(off, seq)
	c.err = c.sc.Err()
	c.small = 0
}

// next advances to the next record and reports whether there is one. When deliver is
// false the record is only checked and passed over (Record then holds only its Seq when
// it was large). It returns false at the end of what is committed so far (more may come:
// see Done), at the end of a sealed segment, and on damage (see Err).
func (c *cursor) next(deliver bool) bool {
	if c.err != nil || c.done {
		return false
	}
	sc := c.sc
	off := sc.Offset()
	verified := false
	c.interrupted = false
	if off >= c.small && len(c.seg.b)-off > bigRecord { // else no large record can be here
		switch c.big(off) {
		case bigVerified:
			verified = true
		case bigNotYet:
			return false
		case bigInterrupted:
			c.interrupted = true
			return false
		case bigEnd:
			c.done = true
			c.err = c.endCheck()
			return false
		case bigCorrupt:
			return false
		}
	}
	var ok bool
	if verified && !deliver {
		ok = sc.Skip()
	} else {
		ok = sc.Next()
	}
	if !ok {
		if c.err = sc.Err(); c.err == nil && sc.Done() {
			c.err = c.endCheck()
		}
		return false
	}
	c.seg.v.Advance(sc.Offset())
	if e := &c.seg.entry; e.LastSeq != 0 && sc.NextSeq() > e.LastSeq+1 && e.Sealed {
		c.err = &segment.CorruptionError{Path: c.seg.path, Offset: int64(off),
			Err: fmt.Errorf("%w: sequence %d above the manifest's last_seq %d for this sealed segment",
				segment.ErrSequence, sc.NextSeq()-1, e.LastSeq)}
		return false
	}
	return true
}

// pass passes over records as next(false) does, checking each one, and writes the offset
// of each into offs; it returns how many it passed, len(offs) at most, fewer at the end
// of what is committed so far, at the end of a sealed segment and on damage (see Err,
// Done). Records no larger than bigRecord are checked in place (segment.Scanner.Pass), a
// window of the View at a time, and copied nowhere; the others, and the record that ends
// a run of them, go through next.
func (c *cursor) pass(offs []int) int {
	n := 0
	for n < len(offs) && c.err == nil && !c.done {
		off := c.sc.Offset()
		limit := len(offs)
		if e := &c.seg.entry; e.Sealed && e.LastSeq != 0 {
			// Never past the manifest's last_seq: next reports a record above it.
			if next := c.sc.NextSeq(); next > e.LastSeq {
				limit = n
			} else if d := e.LastSeq - next + 1; d < uint64(limit-n) {
				limit = n + int(d)
			}
		}
		until := off&^(ringdir.ReadWindow-1) + ringdir.ReadWindow
		if k := c.sc.Pass(offs[n:limit], until, bigRecord); k > 0 {
			n += k
			c.seg.v.Advance(c.sc.Offset())
			continue
		}
		if c.err = c.sc.Err(); c.err != nil {
			break
		}
		if !c.next(false) {
			break
		}
		offs[n] = off
		n++
	}
	return n
}

// skipTo passes over the records before sequence seq with only their framing checked,
// for records already delivered from this segment. It stops early, reporting false, when
// ctx is done (checked every stopEvery records).
func (c *cursor) skipTo(ctx context.Context, seq uint64) bool {
	for n := 1; c.err == nil && !c.done && c.sc.NextSeq() < seq; n++ {
		if n%stopEvery == 0 && ctx.Err() != nil {
			return false
		}
		if !c.sc.Skip() {
			break
		}
		c.seg.v.Advance(c.sc.Offset())
	}
	if c.err == nil {
		c.err = c.sc.Err()
	}
	return true
}

// stopEvery is how many records a reader passes over between looks at its context, so
// that a deadline holds within a few milliseconds however large the segment.
const stopEvery = 4096

// endCheck checks, at the end of a segment listed sealed, that its records reached the
// manifest's last_seq.
func (c *cursor) endCheck() error {
	if e := c.seg.entry; e.Sealed && e.LastSeq != 0 && c.sc.NextSeq() <= e.LastSeq {
		return &segment.CorruptionError{Path: c.seg.path, Offset: int64(c.sc.Offset()),
			Err: fmt.Errorf("%w: records end before sequence %d, below the manifest's last_seq %d for this sealed segment",
				segment.ErrMissing, c.sc.NextSeq(), e.LastSeq)}
	}
	return nil
}

// Record returns the current record; see segment.Scanner.Record for how long its Data is
// valid.
func (c *cursor) Record() segment.Record { return c.sc.Record() }

// Done reports whether the segment can hold no more records for this cursor.
func (c *cursor) Done() bool { return c.done || c.sc.Done() || c.err != nil }

// Err returns the damage that stopped the cursor, if any.
func (c *cursor) Err() error { return c.err }

// NextSeq returns the sequence number the next record will carry.
func (c *cursor) NextSeq() uint64 { return c.sc.NextSeq() }

// Offset returns the offset of the next record.
func (c *cursor) Offset() int { return c.sc.Offset() }

// Verdicts of cursor.big.
const (
	bigNo          = iota // not a large record (or no record): the Scanner handles it
	bigVerified           // a large record whose CRC matches
	bigNotYet             // a large record failing its CRC at or past the committed word of a hot segment
	bigEnd                // the same in a sealed segment: its end
	bigCorrupt            // a large record failing its CRC below the committed word: c.err is set
	bigInterrupted        // ctx was done before the check ended
)

// big checks the record at offset off when it is larger than bigRecord: its CRC, read
// with pread, and, when that fails, what the Scanner would make of the failure (the rules
// of docs/FORMAT.md, reading step 4), without copying the record.
func (c *cursor) big(off int) int {
	b := c.seg.b
	if off < c.small || off+8 > len(b) || len(b)-off <= bigRecord {
		return bigNo
	}
	end, w, ok := c.ahead(off)
	if !ok {
		return bigCorrupt
	}
	if c.small = end; end > off {
		return bigNo
	}
	size := int(uint32(w))
	if size <= bigRecord || size > len(b)-off {
		return bigNo // not committed yet, or malformed: the Scanner says which
	}
	return c.bigCheck(off, w)
}

// aheadRecords and aheadBytes bound how many commit words one look of ahead loads: the
// records of a few cache lines, which the Scanner reads next anyway.
const (
	aheadRecords = 16
	aheadBytes   = 256
)

// ahead loads the commit words of the records from off on, while they are committed
// (non-zero) and no larger than bigRecord, at most aheadRecords of them and none that
// starts aheadBytes or more past off but the first, with one guard against a fault for
// all: it returns the offset where it stopped and the commit word there (0 when it
// stopped for a bound or the end of the segment).
func (c *cursor) ahead(off int) (end int, w uint64, ok bool) {
	defer c.guard(off, &ok, debug.SetPanicOnFault(true))
	b := c.seg.b
	near := off + aheadBytes
	for i := 0; i < aheadRecords && off+8 <= len(b) && (i == 0 || off < near); i++ {
		w = loadWord(b, off)
		size := int(uint32(w))
		if w == 0 || size < segment.RecordHeaderSize || size > bigRecord || size > len(b)-off {
			return off, w, true
		}
		off += segment.RecordSpan(size - segment.RecordHeaderSize)
	}
	return off, 0, true
}

// peek loads the word at off of the mapping. The mapping faults if the file was
// truncated under it: that is damage (c.err), not a crash.
func (c *cursor) peek(off int) (w uint64, ok bool) {
	defer c.guard(off, &ok, debug.SetPanicOnFault(true))
	return loadWord(c.seg.b, off), true
}

// guard turns a memory fault into damage at off; it restores the goroutine's fault
// setting to old. It must be deferred directly.
func (c *cursor) guard(off int, ok *bool, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		if _, isRuntime := r.(runtime.Error); !isRuntime {
			panic(r)
		}
		c.err = &segment.CorruptionError{Path: c.seg.path, Offset: int64(off), Err: fmt.Errorf("%w: %v", segment.ErrFault, r)}
		*ok = false
	}
}

// bigCheck checks the large record at off whose commit word is w, reading it with pread
// (a hole reads as zeroes, and costs the file no memory, where a read through the
// mapping would allocate it on tmpfs).
func (c *cursor) bigCheck(off int, w uint64) int {
	size := int(uint32(w))
	st := &c.crc
	if st.off != off || st.w != w {
		*st = bigCRC{off: off, w: w, pos: int64(off + 8)}
	}
	for end := int64(off + size); !st.done; {
		if c.ctx != nil && c.ctx.Err() != nil {
			return bigInterrupted
		}
		if c.buf == nil {
			c.buf = make([]byte, checkChunk)
		}
		n, err := c.seg.f.ReadAt(c.buf[:min(int64(len(c.buf)), end-st.pos)], st.pos)
		st.sum = crc32.Update(st.sum, crc32.IEEETable, c.buf[:n])
		st.pos += int64(n)
		if err != nil && st.pos < end {
			st.sum = ^uint32(w >> 32) // unreadable: not the stored CRC
			st.pos = end
		}
		st.done = st.pos >= end
	}
	if st.sum == uint32(w>>32) {
		return bigVerified
	}
	corrupt := func() int {
		c.err = &segment.CorruptionError{Path: c.seg.path, Offset: int64(off),
			Err: fmt.Errorf("%w: record of %d bytes", segment.ErrChecksum, size)}
		return bigCorrupt
	}
	committed, ok := c.peek(segment.OffCommitted)
	if !ok {
		return bigCorrupt
	}
	if uint64(off) < committed {
		return corrupt()
	}
	sealed, ok := c.peek(segment.OffSealed)
	switch {
	case !ok:
		return bigCorrupt
	case sealed == 0:
		return bigNotYet
	case sealed != 1:
		c.err = &segment.CorruptionError{Path: c.seg.path, Offset: segment.OffSealed,
			Err: fmt.Errorf("%w: sealed word %#x", segment.ErrHeader, sealed)}
		return bigCorrupt
	}
	if committed, ok = c.peek(segment.OffCommitted); !ok {
		return bigCorrupt
	}
	if uint64(off) < committed {
		return corrupt()
	}
	return bigEnd
}

// loadWord atomically loads the little-endian word at b[off:off+8]; b is a mapping (page
// aligned) and off a multiple of 8.
func loadWord(b []byte, off int) uint64 {
	v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off])))
	if bigEndian {
		var x [8]byte
		binary.BigEndian.PutUint64(x[:], v)
		v = binary.LittleEndian.Uint64(x[:])
	}
	return v
}

var bigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()
