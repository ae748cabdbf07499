package watch

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Stat summarizes a ring.
type Stat struct {
	FirstSeq    uint64 // first retained sequence number; 0 when there is none
	LastSeq     uint64 // last committed sequence number; 0 when there is none
	Records     uint64 // records retained (taken and damaged segments not counted)
	Segments    int    // listed segment files present, damaged ones included
	SegmentSize int64
	SegmentsMax int
	Generation  uint64
	HotSegment  string // name of the hot segment; empty when every segment is sealed or it is gone
	ProducerPID int    // 0 when no producer holds the lock
	// Damage lists the damage found, each error naming its file (and offset): the
	// records of a segment with segment-level damage are not counted, nor those of the
	// hot segment from record-level damage on.
	Damage []error
}

// Stat reads the manifest, checks the header of every listed segment as any reader does,
// and scans the hot segment (from its last index entry, when it has an index that
// serves: docs/FORMAT.md, "The segment index"), and summarizes the ring. Sealed segments are counted by the
// manifest without reading their records, unless their committed word shows they are too
// short to hold them: record-level damage in them is otherwise found by the readers that
// read them. Stat fails only when the ring cannot be read as a whole; damage to segments
// goes to Stat.Damage.
func (r *Ring) Stat() (Stat, error) {
	m, segs, err := r.openSet(0)
	if err != nil {
		return Stat{}, err
	}
	defer closeAll(segs)
	st := Stat{SegmentSize: m.SegmentSize, SegmentsMax: m.SegmentsMax, Generation: m.Generation}
	for i, s := range segs {
		if i > 0 {
			segs[i-1].close() // at most a window open at once
		}
		if s.pending {
			if err := r.openWindow(segs, i); err != nil {
				return Stat{}, err
			}
		}
		if s.gone {
			continue
		}
		st.Segments++
		if s.damage != nil {
			st.Damage = append(st.Damage, s.damage)
			continue
		}
		first, last := s.entry.FirstSeq, s.entry.LastSeq
		if s.entry.Sealed && (s.committed-segment.HeaderSize)/segment.RecordHeaderSize < int64(last-first+1) {
			// Too short to hold the records the manifest lists, each at least a record
			// header long: damaged. Read it as a snapshot does, to say where.
			n, err := s.verify()
			if err != nil {
				st.Damage = append(st.Damage, err)
			}
			if n == 0 {
				continue
			}
			last = first + n - 1
		}
		if !s.entry.Sealed {
			st.HotSegment = s.entry.Name
			c, err := newCursor(s)
			if err != nil {
				st.Damage = append(st.Damage, err)
				continue
			}
			if n, ok := r.countIndexed(c); ok {
				last = first + n - 1 // n > 0: the index had an entry
			} else {
				c = &cursor{seg: s, sc: s.scanner()}
				for c.next(false) {
					last = c.Record().Seq
				}
				if err := c.Err(); err != nil {
					st.Damage = append(st.Damage, err)
				}
			}
			s.close()
			if last == 0 {
				continue
			}
		}
		if st.FirstSeq == 0 {
			st.FirstSeq = first
		}
		st.LastSeq = last
		st.Records += last - first + 1
	}
	pid, err := r.dir.Producer()
	if err != nil && !errors.Is(err, unix.EACCES) {
		return Stat{}, err
	}
	st.ProducerPID = pid
	return st, nil
}

// verify reads every record of the segment as a snapshot does, and returns how many it
// would deliver and the damage that ends them, if any. It leaves the segment closed.
func (s *openSegment) verify() (uint64, error) {
	defer s.close()
	c, err := newCursor(s)
	if err != nil {
		return 0, err
	}
	var n uint64
	for c.next(false) {
		n++
	}
	return n, c.Err()
}
