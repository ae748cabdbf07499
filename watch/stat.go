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
	Records     uint64 // records retained (taken segments not counted)
	Segments    int    // segment files present
	SegmentSize int64
	SegmentsMax int
	Generation  uint64
	HotSegment  string // name of the hot segment; empty when every segment is sealed
	ProducerPID int    // 0 when no producer holds the lock
}

// Stat reads the manifest and the hot segment and summarizes the ring.
func (r *Ring) Stat() (Stat, error) {
	m, segs, err := r.openSet(func(m *segment.Manifest) []segment.Entry { return m.Segments })
	if err != nil {
		return Stat{}, err
	}
	defer closeAll(segs)
	st := Stat{SegmentSize: m.SegmentSize, SegmentsMax: m.SegmentsMax, Generation: m.Generation, Segments: len(segs)}
	for _, s := range segs {
		first, last := s.entry.FirstSeq, s.entry.LastSeq
		if !s.entry.Sealed {
			st.HotSegment = s.entry.Name
			sc := s.scanner()
			for sc.Next() {
				last = sc.Record().Seq
			}
			if err := sc.Err(); err != nil {
				return Stat{}, err
			}
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
