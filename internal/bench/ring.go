package bench

import (
	"context"
	"fmt"
	"os"

	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// openRing sets up a ring in a new directory of the working directory.
func (b *bencher) openRing(size int) (*link, error) {
	dir, err := os.MkdirTemp(b.dir, "ring-")
	if err != nil {
		return nil, err
	}
	w, err := publish.Open(dir, publish.Options{SegmentSize: b.ringSegmentSize(size), Segments: b.Segments})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &link{sender: ringSender{w}, path: dir, remove: dir}, nil
}

// ringSegmentSize is the segment size of the rings for records of size bytes: the
// configured one, or more so that a segment holds at least 16 records.
func (b *bencher) ringSegmentSize(size int) int64 {
	need := int64(segment.HeaderSize + 16*segment.RecordSpan(size))
	need = (need + segment.PageSize - 1) / segment.PageSize * segment.PageSize
	return min(max(b.SegmentSize, need), segment.MaxSegmentSize)
}

// ringSender appends each record to a ring.
type ringSender struct{ w *publish.Writer }

func (s ringSender) send(f frame) error {
	_, err := s.w.Append(f[frameHeader:])
	return err
}

func (s ringSender) close() error { return s.w.Close() }

// readRing follows the ring in dir with a watch.Follower.
func readRing(ctx context.Context, dir string, t *tally, ready func() error) error {
	r, err := watch.Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := r.Follow(watch.Selection{})
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ready(); err != nil {
		return err
	}
	var lost uint64
	for !t.done && f.Next(ctx) {
		if l, ok := f.Loss(); ok {
			lost += l.Count()
		}
		rec := f.Record()
		if err := t.take(rec.Data); err != nil {
			return err
		}
		if seq := t.next - 1; rec.Seq != seq {
			return fmt.Errorf("ring record %d carries record %d", rec.Seq, seq)
		}
	}
	if !t.done {
		return fmt.Errorf("follow: %v", f.Err())
	}
	if lost != t.rep.Lost {
		return fmt.Errorf("the follower reported %d records lost, but %d are missing", lost, t.rep.Lost)
	}
	return nil
}
