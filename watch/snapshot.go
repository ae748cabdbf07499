package watch

import (
	"context"
	"fmt"
	"slices"

	"github.com/filering/filering/segment"
)

// Snapshot reads a consistent set of retained records in order. It is shaped like
// bufio.Scanner:
//
//	snap, err := ring.Snapshot(watch.Selection{Last: 1000})
//	if err != nil { ... }
//	defer snap.Close()
//	for {
//		for snap.Next() {
//			r := snap.Record()
//		}
//		err := snap.Err()
//		if !snap.SkipDamaged() {
//			break // the end (err is nil), or an error that ends the read
//		}
//		log.Print(err) // damage: report it and go on
//	}
//
// The set of segments is fixed when Snapshot returns; the producer may go on appending
// and rolling meanwhile. A snapshot holds at most 64 segment files open at once: one of
// more segments opens them in windows of 64, as Next reaches them, and skips one that was
// taken or retired by then (docs/FORMAT.md, "Reading: a consistent snapshot"). A snapshot with a Last selection ends at the record that was
// newest when Snapshot returned; others also return records appended to the hot
// segment while they are read. Sequence numbers strictly increase. Segments are mapped
// one at a time, as they are read, and closed once read. A Snapshot is not safe for
// concurrent use.
type Snapshot struct {
	ring  *Ring
	segs  []*openSegment // those beyond the first window pending until their window
	i     int            // the segment being read, or next to be
	cur   *cursor        // over segs[i]; nil before it is started
	keep  bool           // a counting pass: segments read are released, not closed
	start uint64         // first sequence to deliver
	end   uint64         // last sequence to deliver; 0 for no limit
	none  bool           // deliver nothing (a Last selection of a ring with no record)
	// first is the first segment the selection reads; those before it are passed over
	// unread, damaged or not. With skip set (Since and Last), the sealed segments that
	// end before start are passed over too, unless skip holds them: they are damaged,
	// and the damage must be reported.
	first    int
	skip     bool
	damaged  map[int]bool
	since    int64
	filter   bool      // since applies
	resume   *resumeAt // where the scan of one segment starts, when not at its beginning
	seen     uint64    // highest sequence number scanned, delivered or not
	filtered uint64    // highest sequence number scanned and left out by Since
	prev     uint64    // the last sequence delivered
	floor    uint64    // the ring's next sequence number as the manifest showed it
	rec      segment.Record
	err      error
	work     readWork
	passed   []int // room for the offsets cursor.pass writes
	// ctx, when set (by a Follower), is looked at every stopEvery records (or fewer)
	// passed over without delivering one: Next then returns false with ctx.Err(), and
	// may be called again.
	ctx context.Context
}

// Snapshot opens the records sel selects. Records a taker removed are skipped. It fails
// only when the ring cannot be read as a whole (no ring, a manifest that is not valid);
// damage to a segment is reported by Next and Err when the read reaches it.
//
// A Last selection counts the records a reader delivers: records of missing segments,
// and records skipped because of damage, do not count. To find where the last N start,
// Snapshot reads the newest segments once before Next reads them again.
func (r *Ring) Snapshot(sel Selection) (*Snapshot, error) {
	s := &Snapshot{ring: r, start: max(sel.From, 1)}
	if !sel.Since.IsZero() {
		s.since, s.filter = sel.Since.UnixNano(), true
	}
	var m *segment.Manifest
	var err error
	if sel.Last > 0 && !s.filter {
		m, err = r.openLast(s, uint64(sel.Last))
	} else {
		m, s.segs, err = r.openSet(sel.From)
	}
	if err != nil {
		return nil, err
	}
	s.floor = m.NextSeq()
	if hot, ok := m.Hot(); ok {
		s.floor = hot.FirstSeq
	}
	if sel.Last > 0 && s.filter {
		s.keepLast(sel.Last)
	}
	return s, nil
}

// openLast opens the newest segments holding the last n records from s.start on, and
// sets where delivery starts and ends. It opens segments newest first until the
// manifest's counts cover n (a hot segment counting for nothing), all before reading
// any, but at most maxOpen at once: past that, it closes those counted, and Next opens
// them again; then it counts the records of each, newest first, checking each as Next will,
// in place (damage ends a segment's count where it ends its delivery: every record of a
// segment from its start is checked, not only those delivered); when damage leaves the
// count short, it opens older segments and counts on. It keeps the offsets of the last
// records of the segment where delivery starts (at most n), so that Next resumes there.
func (r *Ring) openLast(s *Snapshot, n uint64) (*segment.Manifest, error) {
	from := s.start
	for attempt := 0; ; attempt++ {
		s.start, s.end, s.resume = from, 0, nil
		m, err := r.dir.ReadManifest()
		if err != nil {
			return nil, err
		}
		es := m.Segments
		for len(es) > 0 && es[0].Sealed && es[0].LastSeq < s.start {
			es = es[1:]
		}
		var segs []*openSegment // newest first
		var missing []string
		fail := func(err error) (*segment.Manifest, error) {
			closeAll(segs)
			return nil, err
		}
		i := len(es) - 1 // the next entry to open, walking back
		var counted int  // segs[:counted] are counted
		var have uint64  // records they hold from s.start on
		var res *resumeAt
		found := false
		open := 0 // segments of segs open now: at most maxOpen
		for !found && (counted < len(segs) || i >= 0) {
			if open >= maxOpen {
				// Make room: the segments counted are opened again when Next reads them.
				for _, seg := range segs[:counted] {
					if !seg.pending {
						seg.close()
						*seg = *r.pendingSegment(seg.entry, seg.size)
						open--
					}
				}
			}
			// Open back until the manifest's counts cover what is still needed.
			var listed uint64
			for ; i >= 0 && have+listed < n && open < maxOpen; i-- {
				seg, err := r.open(es[i], m.SegmentSize)
				if err == errMissing {
					missing = append(missing, es[i].Name)
					continue
				}
				if err != nil {
					return fail(err)
				}
				segs = append(segs, seg)
				open++
				if seg.damage == nil && es[i].Sealed {
					listed += es[i].LastSeq - max(es[i].FirstSeq, s.start) + 1
				}
			}
			// Count, newest first.
			for ; counted < len(segs) && !found; counted++ {
				c, at, end := s.count(segs[counted], n-have)
				if s.end == 0 {
					s.end = end
				}
				have += c
				if have >= n {
					found, res = true, at
					if at != nil {
						s.start = max(s.start, at.seq)
					}
				}
			}
		}
		slices.Reverse(segs)
		s.first = 0
		if res != nil {
			res.seg = len(segs) - counted
			s.first = res.seg
		}
		s.none = s.end == 0
		s.segs, s.resume = segs, res
		if len(missing) == 0 || attempt >= maxRetries || r.stillListed(m, missing) {
			return m, nil
		}
		closeAll(segs)
	}
}

// count passes over the records of seg from s.start on, checking them as Next does
// (cursor.pass), and returns how many there are, the sequence number of the newest, and,
// when there are at least need, where the need-th from the end is. Records are checked
// in place, not copied: only those Next delivers are. It keeps the offsets of at most the
// last need records, as many as will be delivered. Damage ends the count; Next reports
// it. When the segment's index serves (countIndexed), only the records from the index
// entry before the need-th from the end are read.
func (s *Snapshot) count(seg *openSegment, need uint64) (n uint64, at *resumeAt, newest uint64) {
	if seg.damage != nil || need == 0 {
		return 0, nil, 0
	}
	c, err := newCursor(seg)
	if err != nil {
		return 0, nil, 0
	}
	defer seg.release()
	defer func() { s.work.add(c) }()
	first := c.NextSeq()
	if n, at, newest, ok := s.countIndexed(c, need); ok {
		return n, at, newest
	}
	if c.Offset() != segment.HeaderSize {
		s.work.add(c)
		c = &cursor{seg: seg, sc: seg.scanner()}
	}
	total, offs := passRest(c, need)
	var before uint64 // records below s.start
	if s.start > first {
		before = min(total, s.start-first)
	}
	if n = total - before; n == 0 {
		return 0, nil, 0
	}
	newest = first + total - 1
	if n < need {
		return n, nil, newest
	}
	i := total - need // the need-th record from the end
	return n, &resumeAt{off: offs[i%uint64(len(offs))], seq: first + i}, newest
}

// countIndexed is count through the segment's index (docs/FORMAT.md, "The segment
// index"): it finds how many records the segment holds (the manifest says, for a segment
// listed sealed; for the hot one, the records from its last index entry on are counted),
// and reads only the records from the entry at or before the need-th from the end. It
// serves (ok) only when those records all pass their checks; otherwise count reads the
// segment from its start, as without an index, and meets the damage there. So damage
// before the entry is not read. c is a new cursor over the segment; it is left where the
// index took it.
func (s *Snapshot) countIndexed(c *cursor, need uint64) (n uint64, at *resumeAt, newest uint64, ok bool) {
	seg := c.seg
	first := c.NextSeq()
	if s.start > first {
		return 0, nil, 0, false // a From selection inside the segment: from its start
	}
	if e := seg.entry; e.Sealed && e.LastSeq-first+1 <= need {
		return 0, nil, 0, false // every record counts: from the start, no index to open
	}
	x := s.ring.openIndex(seg)
	if x == nil {
		return 0, nil, 0, false
	}
	defer x.close()
	var total uint64
	if e := seg.entry; e.Sealed {
		total = e.LastSeq - first + 1
	} else if total, ok = x.count(c); !ok {
		return 0, nil, 0, false
	}
	if total <= need {
		return 0, nil, 0, false // every record counts: from the start
	}
	e, _, found := x.find(total - need)
	if !found {
		return 0, nil, 0, false
	}
	c.seek(e.Offset, first+e.Index)
	k, offs := passRest(c, need)
	if c.Err() != nil || k < need {
		return 0, nil, 0, false
	}
	total = e.Index + k
	i := k - need // from the entry
	return total, &resumeAt{off: offs[i%uint64(len(offs))], seq: first + e.Index + i}, first + total - 1, true
}

// passRest passes over the records of c from where it is to the end of what is
// committed, checking each, and returns how many it passed and the offsets of at most
// the last need of them: the offset of the i-th passed (from 0) is offs[i%len(offs)]
// for the last min(need, total).
func passRest(c *cursor, need uint64) (total uint64, offs []int) {
	// offs holds the offsets of the records passed, in order, growing until it holds
	// need; then it is a ring of the last need.
	offs = make([]int, min(need, countChunk))
	for {
		if total == uint64(len(offs)) && uint64(len(offs)) < need {
			grown := make([]int, min(need, 2*uint64(len(offs))))
			copy(grown, offs)
			offs = grown
		}
		pos := int(total % uint64(len(offs)))
		k := c.pass(offs[pos:])
		total += uint64(k)
		if k < len(offs)-pos {
			return total, offs // the end, or damage
		}
	}
}

// seekIndexed moves c, a new cursor over a segment whose records before sequence seq
// are to be passed over, to the index entry at or before seq, when the segment has an
// index that serves (docs/FORMAT.md, "The segment index"). Records from the entry on
// are then read as from the start: damage among them is met the same way.
func (s *Snapshot) seekIndexed(c *cursor, seq uint64) {
	x := s.ring.openIndex(c.seg)
	if x == nil {
		return
	}
	defer x.close()
	first := c.NextSeq()
	if e, _, ok := x.find(seq - first); ok {
		c.seek(e.Offset, first+e.Index)
	}
}

// passBatch is how many records before the selection Next passes over at a time, between
// looks at its context.
const passBatch = 1024

// countChunk is how many offsets count keeps room for at first.
const countChunk = 1024

// readWork is how much reading a Snapshot did: records checked in place without being
// copied, and records copied out of a segment (those Next read, delivered or not). Tests
// use it to check that what a selection copies is bounded by what it delivers.
type readWork struct {
	inPlace, copied int
}

// add counts the work of cursor c.
func (w *readWork) add(c *cursor) {
	if c != nil {
		in, cp := c.sc.Checked()
		w.inPlace += in
		w.copied += cp
	}
}

// openSet reads the manifest and opens the listed segments holding records from sequence
// from on, and the hot one, all before reading any, so that the set is consistent: at
// most maxOpen of them, the first window; those beyond it are in the set pending, for
// openWindow to open when the read reaches them. Damaged segments are in the set, with
// their damage; missing ones of the first window are not. It costs one open and one
// 64-byte read per segment, and one more read of the manifest when a segment of the
// first window was missing: if the manifest was replaced meanwhile and no longer lists
// a segment found missing (the producer retired it, so newer records exist), it starts
// over; a segment still listed was taken, and is skipped.
func (r *Ring) openSet(from uint64) (*segment.Manifest, []*openSegment, error) {
	for attempt := 0; ; attempt++ {
		m, err := r.dir.ReadManifest()
		if err != nil {
			return nil, nil, err
		}
		var segs []*openSegment
		var missing []string
		window := 0 // entries of the first window met so far
		for _, e := range m.Segments {
			if e.Sealed && e.LastSeq < from {
				continue
			}
			if window++; window > maxOpen {
				segs = append(segs, r.pendingSegment(e, m.SegmentSize))
				continue
			}
			s, err := r.open(e, m.SegmentSize)
			if err == errMissing {
				missing = append(missing, e.Name)
				continue
			}
			if err != nil {
				closeAll(segs)
				return nil, nil, err
			}
			segs = append(segs, s)
		}
		if len(missing) == 0 || attempt >= maxRetries || r.stillListed(m, missing) {
			return m, segs, nil
		}
		closeAll(segs)
	}
}

// keepLast handles Last combined with Since: a first pass counts what passes the
// filters, keeping the sequence numbers of the last n (memory for at most as many records
// as are delivered), and raises the start so that only those remain.
func (s *Snapshot) keepLast(n int) {
	c := &Snapshot{ring: s.ring, segs: s.segs, keep: true, start: s.start, since: s.since, filter: s.filter}
	var seqs []uint64
	pos, total := 0, 0 // once seqs holds n, pos is the slot of the oldest
	s.skip, s.damaged = true, map[int]bool{}
	for {
		for c.Next() {
			if len(seqs) < n {
				seqs = append(seqs, c.rec.Seq)
			} else {
				seqs[pos] = c.rec.Seq
				pos = (pos + 1) % n
			}
			total++
		}
		if c.Err() == nil {
			break
		}
		s.damaged[c.i] = true // the real pass meets the same damage, and reports it
		c.SkipDamaged()
	}
	if total == 0 {
		s.none = true
		return
	}
	if total > n {
		s.start = max(s.start, seqs[pos])
	}
	s.end = seqs[(pos+len(seqs)-1)%len(seqs)]
}

// Next advances to the next selected record and reports whether there is one. It
// returns false at the end, and on damage (see Err and SkipDamaged).
func (s *Snapshot) Next() bool {
	for n := 1; s.err == nil; n++ {
		if s.ctx != nil && n%stopEvery == 0 && s.ctx.Err() != nil {
			s.err = s.ctx.Err()
			return false
		}
		if s.cur == nil {
			if s.i >= len(s.segs) {
				return false
			}
			seg := s.segs[s.i]
			if seg == nil || s.i < s.first || s.skip && seg.entry.Sealed && seg.entry.LastSeq < s.start && !s.damaged[s.i] ||
				s.end != 0 && seg.entry.FirstSeq > s.end {
				s.finish() // outside the selection
				continue
			}
			if seg.pending {
				if err := s.ring.openWindow(s.segs, s.i); err != nil {
					s.err = err
					return false
				}
			}
			if seg.gone {
				s.finish() // taken or retired before its window was opened
				continue
			}
			if seg.damage != nil {
				s.err = seg.damage
				return false
			}
			c, err := newCursor(seg)
			if err != nil {
				s.err = err
				return false
			}
			if r := s.resume; r != nil && r.seg == s.i {
				c.seek(r.off, r.seq)
			} else if s.start > c.NextSeq() && !s.none {
				s.seekIndexed(c, s.start)
			}
			s.cur = c
		}
		c := s.cur
		c.ctx = s.ctx
		below := s.start // records below it are passed over, not delivered
		if s.end != 0 {
			below = min(below, s.end+1)
		}
		if next := c.NextSeq(); !s.none && next < below && next > s.prev {
			// Check them in place, copying none: cursor.pass.
			if s.passed == nil {
				s.passed = make([]int, passBatch)
			}
			if c.pass(s.passed[:min(passBatch, below-next)]) > 0 {
				s.seen = c.NextSeq() - 1
				if s.ctx != nil && s.ctx.Err() != nil {
					s.err = s.ctx.Err()
					return false
				}
				continue
			}
			// Nothing passed: the end of the segment, or damage, as next reports it.
			if s.stopped(c) {
				return false
			}
			continue
		}
		off := c.Offset()
		if !c.next(c.NextSeq() >= s.start) {
			if s.stopped(c) {
				return false
			}
			continue
		}
		r := c.Record()
		if r.Seq <= s.prev {
			s.err = &segment.CorruptionError{Path: s.segs[s.i].path, Offset: int64(off),
				Err: fmt.Errorf("%w: sequence %d after %d", segment.ErrSequence, r.Seq, s.prev)}
			return false
		}
		if s.none || s.end != 0 && r.Seq > s.end {
			s.finish()
			s.i = len(s.segs)
			return false
		}
		s.seen = r.Seq
		if r.Seq < s.start {
			continue
		}
		if s.filter && r.Time < s.since {
			s.filtered = r.Seq
			continue
		}
		s.prev = r.Seq
		s.rec = r
		return true
	}
	return false
}

// stopped settles a cursor that read nothing more: damage, or ctx done while a large
// record was checked, ends Next (s.err set, and it reports true); the end of the
// segment finishes it.
func (s *Snapshot) stopped(c *cursor) bool {
	if s.err = c.Err(); s.err != nil {
		return true
	}
	if c.interrupted {
		s.err = s.ctx.Err()
		return true
	}
	s.finish()
	return false
}

// finish is done with the segment being read: it closes it, or for a counting pass
// releases its pages, and moves to the next.
func (s *Snapshot) finish() {
	s.work.add(s.cur)
	if s.i < len(s.segs) {
		switch seg := s.segs[s.i]; {
		case seg == nil || seg.gone:
		case s.keep && len(s.segs) <= maxOpen:
			seg.release()
		case s.keep:
			// A counting pass over more than a window closes what it has read, and
			// the real pass opens it again.
			seg.close()
			if !seg.pending {
				*seg = *s.ring.pendingSegment(seg.entry, seg.size)
			}
		default:
			seg.close()
		}
	}
	s.cur = nil
	s.i++
}

// current returns the segment being read, or nil.
func (s *Snapshot) current() *openSegment {
	if s.i < len(s.segs) {
		return s.segs[s.i]
	}
	return nil
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (s *Snapshot) Record() segment.Record { return s.rec }

// SkipDamaged moves past the rest of a damaged segment after Next stopped on damage
// (segment-level or record-level: every error Next reports is confined to one segment),
// so that Next goes on with the next segment. It reports whether there was such an error
// to move past.
func (s *Snapshot) SkipDamaged() bool {
	if s.err == nil || s.ctx != nil && s.err == s.ctx.Err() {
		return false
	}
	s.err = nil
	s.finish()
	return true
}

// Err returns the error that stopped Next: a *segment.CorruptionError naming the file
// and offset when a segment is damaged, or an error naming a listed segment that is not
// a regular file or could not be opened (it wraps the *os.PathError of the open).
func (s *Snapshot) Err() error { return s.err }

// Close releases the segments the snapshot holds.
func (s *Snapshot) Close() error {
	closeAll(s.segs)
	s.segs, s.cur = nil, nil
	return nil
}

// resumeAt is where the scan of segment seg of a snapshot starts when it is not the
// segment's beginning: at offset off, where the record with sequence seq is.
type resumeAt struct {
	seg int
	off int
	seq uint64
}
