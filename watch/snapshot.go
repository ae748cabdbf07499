package watch

import (
	"errors"

	"github.com/filering/filering/segment"
)

// Snapshot reads a consistent set of retained records in order. It is shaped like
// bufio.Scanner:
//
//	snap, err := ring.Snapshot(watch.Selection{Last: 1000})
//	if err != nil { ... }
//	defer snap.Close()
//	for snap.Next() {
//		r := snap.Record()
//	}
//	if err := snap.Err(); err != nil { ... }
//
// The set of segments is fixed when Snapshot returns; the producer may go on appending
// and rolling meanwhile. A snapshot with a Last selection ends at the record that was
// newest when Snapshot returned; others also return records appended to the hot
// segment while they are read. A Snapshot is not safe for concurrent use.
type Snapshot struct {
	segs  []*openSegment
	i     int
	sc    *segment.Scanner
	start uint64 // first sequence to deliver
	end   uint64 // last sequence to deliver; 0 for no limit
	since int64
	seen  uint64 // highest sequence number scanned, delivered or not
	floor uint64 // the ring's next sequence number as the manifest showed it
	rec   segment.Record
	err   error
}

// Snapshot opens the records sel selects. Records a taker removed are skipped.
func (r *Ring) Snapshot(sel Selection) (*Snapshot, error) {
	// For a Last selection only the newest segments are opened. When some of those
	// turn out to be gone (taken), open further back, by as many as were missing.
	var m *segment.Manifest
	var segs []*openSegment
	for extra := 0; ; {
		var picked int
		var err error
		m, segs, err = r.openSet(func(m *segment.Manifest) []segment.Entry {
			es := pick(m, sel, extra)
			picked = len(es)
			return es
		})
		if err != nil {
			return nil, err
		}
		missing := picked - len(segs)
		if missing == 0 || sel.Last == 0 || picked >= len(m.Segments) || extra >= len(m.Segments) {
			break
		}
		closeAll(segs)
		extra += missing
	}
	s := &Snapshot{segs: segs, start: max(sel.From, 1), floor: m.NextSeq()}
	if hot, ok := m.Hot(); ok {
		s.floor = hot.FirstSeq
	}
	if !sel.Since.IsZero() {
		s.since = sel.Since.UnixNano()
	}
	if sel.Last > 0 && sel.Since.IsZero() {
		if err := s.bound(m, uint64(sel.Last)); err != nil {
			s.Close()
			return nil, err
		}
	}
	if sel.Last > 0 && !sel.Since.IsZero() {
		s.keepLast(sel.Last)
	}
	return s, nil
}

// pick returns the entries of m a selection may need, oldest first: for a Last
// selection, the hot segment and enough sealed ones before it to hold Last records,
// and extra more.
func pick(m *segment.Manifest, sel Selection, extra int) []segment.Entry {
	es := m.Segments
	if sel.From > 0 {
		for len(es) > 0 && es[0].Sealed && es[0].LastSeq < sel.From {
			es = es[1:]
		}
	}
	if sel.Last > 0 && sel.Since.IsZero() {
		var n uint64
		i := len(es) - 1
		for ; i > 0; i-- {
			if e := es[i]; e.Sealed {
				n += e.LastSeq - e.FirstSeq + 1
			}
			if n >= uint64(sel.Last) {
				break
			}
		}
		es = es[max(i-extra, 0):]
	}
	return es
}

// bound limits the snapshot to the last n records of the set (and at or after s.start).
// It scans the newest segment to learn its last sequence number, keeping the offsets of
// its last n records so that the scan of that segment can resume where delivery starts.
// Sequence numbers may jump between segments (a taken or lost segment), so the start is
// found by counting records segment by segment, newest first.
func (s *Snapshot) bound(m *segment.Manifest, n uint64) error {
	if len(s.segs) == 0 {
		return nil
	}
	last := s.segs[len(s.segs)-1]
	sc := last.scanner()
	offs := make([]int, 0, min(n, 1<<16))
	var pos int // next slot of offs when it is full
	var lastSeq, count uint64
	for {
		// Only the records delivered are read and checked; the others are skipped.
		off := sc.Offset()
		if !sc.Skip() {
			break
		}
		lastSeq = sc.Record().Seq
		count++
		if uint64(len(offs)) < n && len(offs) < cap(offs) {
			offs = append(offs, off)
		} else {
			offs[pos] = off
			pos = (pos + 1) % len(offs)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if count == 0 {
		last.entry.LastSeq = 0
	} else {
		last.entry.LastSeq = lastSeq
		s.end = lastSeq
	}
	// Walk back from the newest segment until n records are covered.
	need := n
	for i := len(s.segs) - 1; i >= 0; i-- {
		seg := s.segs[i]
		c := count
		if i != len(s.segs)-1 {
			c = seg.entry.LastSeq - seg.entry.FirstSeq + 1
			if s.end == 0 {
				s.end = seg.entry.LastSeq
			}
		}
		if c == 0 {
			continue
		}
		if c >= need {
			s.start = max(s.start, seg.entry.LastSeq-need+1)
			break
		}
		need -= c
	}
	if s.end == 0 {
		s.start = 1 << 63 // nothing to deliver
		return nil
	}
	// Resume the newest segment's scan at the first wanted record, if we kept its offset.
	k := uint64(len(offs))
	if k > 0 && lastSeq-k+1 <= s.start && s.start <= lastSeq {
		// offs holds the offsets of records lastSeq-k+1 .. lastSeq, oldest at offs[pos].
		idx := (pos + int(s.start-(lastSeq-k+1))) % len(offs)
		last.resume = &resumeAt{off: offs[idx], seq: s.start}
	}
	return nil
}

// keepLast handles Last combined with Since: it counts what passes the filters and
// raises the start so that only the last n remain.
func (s *Snapshot) keepLast(n int) {
	c := &Snapshot{segs: s.segs, start: s.start, since: s.since}
	var seqs []uint64
	for c.Next() {
		seqs = append(seqs, c.rec.Seq)
	}
	if c.err != nil {
		return // the real pass meets the same error
	}
	if len(seqs) > n {
		s.start = seqs[len(seqs)-n]
	}
	if len(seqs) > 0 {
		s.end = seqs[len(seqs)-1]
	}
	for _, seg := range s.segs {
		seg.resume = nil
	}
}

// Next advances to the next selected record and reports whether there is one.
func (s *Snapshot) Next() bool {
	for s.err == nil {
		if s.sc == nil {
			if s.i >= len(s.segs) {
				return false
			}
			seg := s.segs[s.i]
			if seg.entry.Sealed && seg.entry.LastSeq < s.start {
				s.i++
				continue
			}
			s.sc = seg.scanner()
			if r := seg.resume; r != nil {
				s.sc.Seek(r.off, r.seq)
			}
		}
		if !s.sc.Next() {
			if s.err = s.sc.Err(); s.err != nil {
				return false
			}
			s.sc = nil
			s.i++
			continue
		}
		r := s.sc.Record()
		if s.end != 0 && r.Seq > s.end {
			s.sc, s.i = nil, len(s.segs)
			return false
		}
		s.seen = r.Seq
		if r.Seq < s.start || r.Time < s.since {
			continue
		}
		s.rec = r
		return true
	}
	return false
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (s *Snapshot) Record() segment.Record { return s.rec }

// SkipDamaged moves past the rest of a damaged segment after Next stopped on a
// *segment.CorruptionError, so that Next goes on with the next segment. It reports
// whether there was such an error to move past.
func (s *Snapshot) SkipDamaged() bool {
	var ce *segment.CorruptionError
	if !errors.As(s.err, &ce) {
		return false
	}
	s.err, s.sc = nil, nil
	s.i++
	return true
}

// Err returns the first error met, a *segment.CorruptionError naming the file and offset
// when the ring is damaged.
func (s *Snapshot) Err() error { return s.err }

// Close releases the segments the snapshot holds.
func (s *Snapshot) Close() error {
	closeAll(s.segs)
	s.segs = nil
	return nil
}

// resumeAt is where a scan of a segment starts when it is not the segment's beginning.
type resumeAt struct {
	off int
	seq uint64
}
