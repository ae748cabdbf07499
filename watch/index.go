package watch

import (
	"encoding/binary"
	"os"

	"github.com/filering/filering/segment"
	"golang.org/x/sys/unix"
)

// segIndex is the index of one open segment (docs/FORMAT.md, "The segment index"), open
// for one positioning of a read and closed after it. A reader never needs an index, and
// one that fails a check is not used and not reported.
type segIndex struct {
	seg *openSegment
	hdr segment.IndexHeader
	f   *os.File
	buf []byte // entries read with one pread, indexBatch at most
}

// indexBatch is how many entries a segIndex reads at once.
const indexBatch = 512

// openIndex opens the index of seg, a segment opened without damage, and checks its
// header; it returns nil when there is none to use. The file is read with pread, so an
// index truncated or rewritten under the reader costs it nothing but the index. The
// caller closes it.
func (r *Ring) openIndex(seg *openSegment) *segIndex {
	if seg.damage != nil || seg.f == nil || seg.size <= segment.MinIndexBlock {
		return nil // no index can have an entry: not worth an open
	}
	f, err := r.dir.OpenFile(segment.IndexName(seg.num), unix.O_RDONLY, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	var hdr [segment.IndexHeaderSize]byte
	if unix.Fstat(int(f.Fd()), &st) == nil {
		if _, err := f.ReadAt(hdr[:], 0); err == nil {
			if h, err := segment.ParseIndexHeader(hdr[:], seg.num, seg.size, st.Size); err == nil {
				return &segIndex{seg: seg, hdr: h, f: f}
			}
		}
	}
	f.Close()
	return nil
}

// close closes the index file.
func (x *segIndex) close() { x.f.Close() }

// find returns the entry the read of the record with index i (its sequence number minus
// the segment's first) starts at: the one with the largest k that is written and whose
// index is at most i, checked against the segment. ok is false when there is no such
// entry or it fails a check: the read then starts at the segment's first record. An
// i of ^uint64(0) asks for the last entry written.
func (x *segIndex) find(i uint64) (e segment.IndexEntry, k int, ok bool) {
	for hi := x.hdr.Count; hi >= 1; {
		lo := max(1, hi-indexBatch+1)
		n := hi - lo + 1
		if cap(x.buf) < 8*n {
			x.buf = make([]byte, 8*indexBatch)
		}
		b := x.buf[:8*n]
		if _, err := x.f.ReadAt(b, int64(segment.IndexHeaderSize+8*(lo-1))); err != nil {
			return e, 0, false
		}
		for j := n - 1; j >= 0; j-- {
			e, written := segment.ParseIndexEntry(binary.LittleEndian.Uint64(b[8*j:]))
			if !written || e.Index > i {
				continue
			}
			k = lo + j
			return e, k, x.check(e, k)
		}
		hi = lo - 1
	}
	return e, 0, false
}

// check reports whether entry e, entry k, points at a record that passes the record
// rules with the sequence number the entry gives it, and, in a segment sealed now, ends
// at or below the committed word.
func (x *segIndex) check(e segment.IndexEntry, k int) bool {
	seg := x.seg
	if !segment.PlausibleEntry(e, k, x.hdr.Block, seg.size) {
		return false
	}
	if err := seg.mapped(); err != nil {
		return false
	}
	c := &cursor{seg: seg, sc: seg.scanner()}
	c.seek(e.Offset, seg.hdr.FirstSeq+e.Index)
	var one [1]int
	if c.pass(one[:]) != 1 {
		return false
	}
	if seg.sealedNow() {
		end, err := segment.Committed(seg.b)
		return err == nil && int64(c.Offset()) <= end
	}
	return true
}

// count returns how many records the segment holds, from its last entry on: the entry's
// index and the records c, a cursor over the segment, passes from it to the end of what
// is committed. ok is false when there is no entry to use or a record from it on fails
// its checks; c is then somewhere in the segment.
func (x *segIndex) count(c *cursor) (n uint64, ok bool) {
	last, _, found := x.find(^uint64(0))
	if !found {
		return 0, false
	}
	c.seek(last.Offset, x.seg.hdr.FirstSeq+last.Index)
	k, _ := passRest(c, 1)
	if c.Err() != nil {
		return 0, false
	}
	return last.Index + k, true
}

// countIndexed counts the records of the segment c is a new cursor over through the
// segment's index (segIndex.count), when it has one that serves.
func (r *Ring) countIndexed(c *cursor) (uint64, bool) {
	x := r.openIndex(c.seg)
	if x == nil {
		return 0, false
	}
	defer x.close()
	return x.count(c)
}
