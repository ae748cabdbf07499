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
	r     *Ring // the ring being read: the caller's, or one the follower reopened
	owned bool  // r was opened by the follower and is closed by it
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
	lastNum uint64 // number of the newest segment read from, 0 before the first
	// restarted is set when the ring was removed and created anew and the follower
	// started over with it; reported with the next record.
	restarted, restartedNow bool
}

// Restarted reports whether the current record is the first one of a ring that was
// removed and created anew (its sequence numbers start again) since the previous record.
func (f *Follower) Restarted() bool { return f.restartedNow }

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
	f.lossy, f.restartedNow = false, false
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
			if n := len(f.snap.segs); n > 0 {
				f.lastNum = f.snap.segs[n-1].num
			}
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
	f.restartedNow, f.restarted = f.restarted, false
	if f.next != 0 && r.Seq > f.next {
		f.loss, f.lossy = Loss{From: f.next, To: r.Seq - 1}, true
	}
	f.next = r.Seq + 1
	f.rec = r
}

// advance opens the next segment to read: the first one in the manifest after the
// current one that may hold f.next or later records. It reports whether there is
// something to read: it moved, or the current segment turned out to be sealed.
func (f *Follower) advance() (bool, error) {
	if f.replaced() {
		if err := f.reopen(); err != nil {
			return false, nil // not there (yet): keep waiting
		}
	}
	m, err := f.r.dir.ReadManifest()
	if errors.Is(err, ErrNoRing) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n := len(m.Segments); n > 0 && m.Segments[n-1].Number() < f.lastNum {
		// Segment numbers went backwards: the ring was created anew in place.
		f.startOver()
	}
	if f.sc != nil && !f.sc.Done() {
		// The current segment is not finished. The producer seals a segment before it
		// lists a newer one, so if it is sealed now, it may hold records not read yet:
		// read them first. Only a segment still unsealed now was abandoned.
		if sealed, err := segment.Sealed(f.cur.b); err != nil || sealed {
			return true, nil
		}
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
		f.cur, f.sc, f.lastNum = s, s.scanner(), s.num
		return true, nil
	}
	return false, nil
}

// replaced reports whether the ring directory's path now names another directory than
// the one the follower has open: the ring was removed and created again.
func (f *Follower) replaced() bool {
	var a, b unix.Stat_t
	if unix.Fstat(f.r.dir.Fd(), &a) != nil || unix.Stat(f.r.dir.Path(), &b) != nil {
		return false
	}
	return a.Ino != b.Ino || a.Dev != b.Dev
}

// reopen switches to the directory that now has the ring's path, and starts over.
func (f *Follower) reopen() error {
	nr, err := Open(f.r.dir.Path())
	if err != nil {
		return err
	}
	if f.owned {
		f.r.Close()
	}
	f.r, f.owned = nr, true
	f.wake.close()
	f.wake = newWaker(nr.dir.Path())
	f.startOver()
	return nil
}

// startOver forgets the position in a ring that no longer exists.
func (f *Follower) startOver() {
	f.cur.close()
	f.cur, f.sc, f.lastNum = nil, nil, 0
	f.next = 1
	f.restarted = true
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (f *Follower) Record() segment.Record { return f.rec }

// Loss reports the records lost just before the current one, if any.
func (f *Follower) Loss() (Loss, bool) { return f.loss, f.lossy }

// SkipDamaged moves past the rest of a damaged segment after Next stopped on a
// *segment.CorruptionError; the next call to Next goes on with the next segment, and the
// records skipped are reported by Loss. It reports whether there was such an error.
func (f *Follower) SkipDamaged() bool {
	var ce *segment.CorruptionError
	if !errors.As(f.err, &ce) {
		return false
	}
	f.err = nil
	if f.snap != nil {
		f.snap.SkipDamaged()
		return true
	}
	// Leave the damaged segment: advance opens the next one after it.
	f.sc = nil
	return true
}

// Err returns why Next returned false.
func (f *Follower) Err() error { return f.err }

// Close releases the follower's files and stops its watcher.
func (f *Follower) Close() error {
	if f.snap != nil {
		f.snap.Close()
	}
	f.cur.close()
	f.wake.close()
	if f.owned {
		f.r.Close()
	}
	return nil
}
