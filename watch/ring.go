// Package watch is the reader side of a filering ring: consistent snapshots of the
// retained records (Snapshot), followers that wait for new records (Follower), and
// takers that consume sealed segments exactly once (Taker). Readers need only read
// permission on the ring and never lock; takers also need to rename files in it.
//
// Records are read from shared read-only mappings of the segment files, with no system
// call per record. A reader copies each record out of the mapping before it checks the
// record's CRC, so what it returns is what it checked.
package watch

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// ErrNoRing means the directory holds no ring (no manifest).
var ErrNoRing = ringdir.ErrNoRing

// maxRetries bounds how often a reader starts over because the producer replaced the
// manifest while it was opening segments. Each retry needs a roll to happen within the
// few microseconds it takes to open the segments, so a handful always suffices.
const maxRetries = 100

// Ring is a read-only handle on a ring directory. It is safe for concurrent use; the
// scanners it returns are not.
type Ring struct {
	dir *ringdir.Dir
}

// Open opens the ring directory at path for reading. The directory must exist; it need
// not hold a ring yet (Snapshot and Stat then fail with ErrNoRing, Follow waits).
func Open(path string) (*Ring, error) {
	d, err := ringdir.Open(path)
	if err != nil {
		return nil, err
	}
	return &Ring{dir: d}, nil
}

// Close releases the ring. Scanners obtained from it must be closed first.
func (r *Ring) Close() error { return r.dir.Close() }

// Path returns the ring directory's path.
func (r *Ring) Path() string { return r.dir.Path() }

// Manifest reads and validates the current manifest.
func (r *Ring) Manifest() (*segment.Manifest, error) { return r.dir.ReadManifest() }

// Selection chooses which retained records a Snapshot or Follower starts with. The zero
// value selects every retained record. From and Since filter; Last then keeps only the
// last N of what passes.
type Selection struct {
	Last  int       // when > 0, only the last Last records
	From  uint64    // when > 0, only records with sequence >= From
	Since time.Time // when not zero, only records appended at or after Since
}

// Loss describes records a follower will never see: they were overwritten by the ring,
// or taken by a taker, before the follower reached them.
type Loss struct {
	From, To uint64 // inclusive range of lost sequence numbers
}

// Count returns how many records were lost.
func (l Loss) Count() uint64 { return l.To - l.From + 1 }

func (l Loss) String() string {
	return fmt.Sprintf("lost %d records (%d to %d)", l.Count(), l.From, l.To)
}

// openSegment is a segment file held open and mapped read-only.
type openSegment struct {
	entry segment.Entry
	num   uint64
	path  string
	f     *os.File
	b     []byte
	hdr   segment.Header

	resume *resumeAt // where a snapshot starts reading it, when not at the beginning
}

// open opens and maps the segment e of manifest m and checks its header against m. An
// error wrapping unix.ENOENT means the file is gone.
func (r *Ring) open(m *segment.Manifest, e segment.Entry) (*openSegment, error) {
	f, err := r.dir.OpenFile(e.Name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return r.mapSegment(f, e, m.SegmentSize)
}

// mapSegment maps f, which must hold the segment described by e, and checks its header.
// It takes ownership of f.
func (r *Ring) mapSegment(f *os.File, e segment.Entry, size int64) (*openSegment, error) {
	s := &openSegment{entry: e, num: e.Number(), path: f.Name(), f: f}
	fail := func(err error) (*openSegment, error) {
		s.close()
		return nil, err
	}
	n, err := ringdir.FileSize(f)
	if err != nil {
		return fail(err)
	}
	if n != size {
		return fail(&segment.CorruptionError{Path: s.path, Offset: 0,
			Err: fmt.Errorf("%w: file is %d bytes, ring segments are %d", segment.ErrHeader, n, size)})
	}
	if s.b, err = ringdir.Map(f, size, false); err != nil {
		return fail(err)
	}
	h, err := segment.ParseHeader(s.b)
	if err == nil && (h.Size != size || h.Number != s.num || h.FirstSeq != e.FirstSeq) {
		err = fmt.Errorf("%w: header says segment %d, first sequence %d, size %d; manifest says %d, %d, %d",
			segment.ErrHeader, h.Number, h.FirstSeq, h.Size, s.num, e.FirstSeq, size)
	}
	if err != nil {
		return fail(&segment.CorruptionError{Path: s.path, Offset: 0, Err: err})
	}
	s.hdr = h
	return s, nil
}

func (s *openSegment) scanner() *segment.Scanner { return segment.NewScanner(s.path, s.b, s.hdr) }

func (s *openSegment) close() {
	if s == nil {
		return
	}
	ringdir.Unmap(s.b)
	s.b = nil
	if s.f != nil {
		s.f.Close()
	}
}

func closeAll(segs []*openSegment) {
	for _, s := range segs {
		s.close()
	}
}

// openSet reads the manifest and opens the segments of it that pick selects, all before
// reading any, so that the set is consistent. A listed segment that is missing makes it
// read the manifest again: if the manifest changed it starts over, otherwise the segment
// was taken or removed and is skipped.
func (r *Ring) openSet(pick func(m *segment.Manifest) []segment.Entry) (*segment.Manifest, []*openSegment, error) {
	for attempt := 0; ; attempt++ {
		m, err := r.dir.ReadManifest()
		if err != nil {
			return nil, nil, err
		}
		segs, changed, err := r.openEntries(m, pick(m), attempt < maxRetries)
		if err != nil {
			return nil, nil, err
		}
		if !changed {
			return m, segs, nil
		}
	}
}

// openEntries opens entries of m. When a file is missing and recheck is set, it reports
// changed if the manifest was replaced meanwhile (having closed what it opened).
func (r *Ring) openEntries(m *segment.Manifest, entries []segment.Entry, recheck bool) ([]*openSegment, bool, error) {
	segs := make([]*openSegment, 0, len(entries))
	for _, e := range entries {
		s, err := r.open(m, e)
		if errors.Is(err, unix.ENOENT) {
			if recheck {
				if now, merr := r.dir.ReadManifest(); merr != nil || now.Generation != m.Generation {
					closeAll(segs)
					return nil, true, nil
				}
			}
			continue
		}
		if err != nil {
			closeAll(segs)
			return nil, false, err
		}
		segs = append(segs, s)
	}
	return segs, false, nil
}
