package watch

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Follower delivers the records a Selection picks and then every record appended after
// them, waiting for new ones. It is shaped like a scanner whose Next blocks:
//
//	f, err := ring.Follow(watch.Selection{Last: 10})
//	defer f.Close()
//	for f.Next(ctx) {
//		if l, ok := f.Loss(); ok { log.Print(l) }
//		r := f.Record()
//	}
//	// f.Err() is ctx.Err() after cancellation, or what stopped it.
//
// A Follower holds the segment it reads open, so the producer removing it does not cut
// the follower off; records that are overwritten before the follower reaches them are
// reported exactly by Loss. A Follower started before its ring exists waits for it. It
// wakes on inotify events on the ring directory and polls as a fallback. A Follower is
// not safe for concurrent use.
type Follower struct {
	r     *Ring
	snap  *Snapshot
	cur   *openSegment
	sc    *segment.Scanner
	next  uint64 // next expected sequence number; 0 before the first record
	wake  *waker
	rec   segment.Record
	loss  Loss
	lossy bool
	err   error
	idle  func()
	// recheck asks for the manifest to be read after the next scan of the current
	// segment comes up empty.
	recheck bool
}

// OnWait sets a function the Follower calls each time it is about to wait for new
// records, for instance to flush buffered output.
func (f *Follower) OnWait(fn func()) { f.idle = fn }

// Follow returns a Follower that starts with the records sel selects.
func (r *Ring) Follow(sel Selection) (*Follower, error) {
	f := &Follower{r: r, wake: newWaker(r.dir.Path()), next: sel.From}
	snap, err := r.Snapshot(sel)
	switch {
	case errors.Is(err, ErrNoRing):
		// Every record the ring will ever hold is new to this follower.
		f.next = max(sel.From, 1)
	case err != nil:
		f.wake.close()
		return nil, err
	default:
		f.snap = snap
	}
	return f, nil
}

// Next waits for the next record and reports whether there is one. It returns false
// when ctx is done (Err then returns ctx.Err()) or on an error.
func (f *Follower) Next(ctx context.Context) bool {
	f.lossy = false
	for f.err == nil {
		if f.snap != nil {
			if f.snap.Next() {
				f.deliver(f.snap.Record())
				return true
			}
			if f.err = f.snap.Err(); f.err != nil {
				return false
			}
			if f.snap.end != 0 {
				f.next = max(f.next, f.snap.end+1)
			}
			f.next = max(f.next, f.snap.seen+1, f.snap.floor)
			f.snap.Close()
			f.snap = nil
		}
		if f.sc != nil {
			if f.sc.Next() {
				r := f.sc.Record()
				if r.Seq < f.next {
					continue
				}
				f.deliver(r)
				return true
			}
			if f.err = f.sc.Err(); f.err != nil {
				return false
			}
		}
		// A segment is finished when it is sealed and read to its end. A segment that
		// is still unsealed although the manifest, read after a fresh scan, lists a
		// newer one was abandoned by a producer that died and lost its file.
		if f.sc == nil || f.sc.Done() || f.recheck {
			f.recheck = false
			moved, err := f.advance()
			if err != nil {
				f.err = err
				return false
			}
			if moved {
				continue
			}
		}
		if f.idle != nil {
			f.idle()
		}
		manifest, err := f.wake.wait(ctx)
		if err != nil {
			f.err = err
			return false
		}
		f.recheck = manifest
	}
	return false
}

// deliver makes r the current record, noting any gap before it.
func (f *Follower) deliver(r segment.Record) {
	if f.next != 0 && r.Seq > f.next {
		f.loss, f.lossy = Loss{From: f.next, To: r.Seq - 1}, true
	}
	f.next = r.Seq + 1
	f.rec = r
}

// advance opens the next segment to read: the first one in the manifest after the
// current one that may hold f.next or later records. It reports whether it moved.
func (f *Follower) advance() (bool, error) {
	m, err := f.r.dir.ReadManifest()
	if errors.Is(err, ErrNoRing) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range m.Segments {
		if f.cur != nil && e.Number() <= f.cur.num {
			continue
		}
		if f.next != 0 && e.Sealed && e.LastSeq < f.next {
			continue
		}
		s, err := f.r.open(m, e)
		if errors.Is(err, unix.ENOENT) {
			continue // taken or removed; its records show up as a loss
		}
		if err != nil {
			return false, err
		}
		f.cur.close()
		f.cur, f.sc = s, s.scanner()
		return true, nil
	}
	return false, nil
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (f *Follower) Record() segment.Record { return f.rec }

// Loss reports the records lost just before the current one, if any.
func (f *Follower) Loss() (Loss, bool) { return f.loss, f.lossy }

// Err returns why Next returned false.
func (f *Follower) Err() error { return f.err }

// Close releases the follower's files and stops its watcher.
func (f *Follower) Close() error {
	if f.snap != nil {
		f.snap.Close()
	}
	f.cur.close()
	f.wake.close()
	return nil
}
