package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// openRing sets up a ring in a new directory of the working directory, written with
// Append, or with AppendBatch when batch is set.
func (b *bencher) openRing(size int, batch bool) (*link, error) {
	dir, err := os.MkdirTemp(b.dir, "ring-")
	if err != nil {
		return nil, err
	}
	w, err := publish.Open(dir, publish.Options{SegmentSize: b.ringSegmentSize(size), Segments: b.Segments})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var s sender = ringSender{w}
	if batch {
		s = &batchSender{w: w, size: size, buf: make([]byte, batchSize*size)}
	}
	return &link{sender: s, path: dir, remove: dir}, nil
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

// batchSender gathers batchSize records and appends them with one AppendBatch. It copies
// each payload, as a producer that reads records into a buffer does.
type batchSender struct {
	w    *publish.Writer
	size int
	buf  []byte   // room for batchSize payloads
	recs [][]byte // the payloads gathered, in buf
}

func (s *batchSender) send(f frame) error {
	i := len(s.recs)
	p := s.buf[i*s.size : (i+1)*s.size]
	copy(p, f[frameHeader:])
	if s.recs = append(s.recs, p); len(s.recs) == batchSize {
		return s.flush()
	}
	return nil
}

func (s *batchSender) flush() error {
	if len(s.recs) == 0 {
		return nil
	}
	_, _, err := s.w.AppendBatch(s.recs)
	s.recs = s.recs[:0]
	return err
}

func (s *batchSender) close() error {
	err := s.flush()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	return err
}

// readRing follows the ring in dir with a watch.Follower, spinning for spin (see
// Follower.Spin).
func readRing(ctx context.Context, dir string, spin time.Duration, t *tally, ready func() error) error {
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
	f.Spin(spin)
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
