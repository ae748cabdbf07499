package watch

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Follower delivers the records a Selection picks and then every record appended after
// them, waiting for new ones. It is shaped like a scanner whose Next blocks:
//
//	f, err := ring.Follow(watch.Selection{Last: 10})
//	defer f.Close()
//	f.OnLoss(func(l watch.Loss) { log.Print(l) }) // optional: see below
//	for {
//		for f.Next(ctx) {
//			r := f.Record()
//		}
//		err := f.Err() // ctx.Err() after cancellation, or what stopped it
//		if !f.SkipDamaged() {
//			break
//		}
//		log.Print(err) // damage: report it and follow on
//	}
//
// A Follower goes by sequence number, never by segment number or file name: it delivers
// records in strictly increasing sequence order, each at most once, and after any rescan,
// producer restart or roll it continues with the first record at or after the next one it
// expects. Only when the ring was created anew (the directory at its path is another one,
// or the ring's next sequence number fell below what the follower already saw) does it
// start over from the new ring's first record; Restarted then reports it.
//
// Records the follower will never see (overwritten by the ring, taken by a taker, lost
// in a producer crash, or skipped as damaged) are reported as losses, exactly, and as
// soon as the follower can know: when the manifest shows that the segments that could
// hold them are gone and something later exists (a later segment, or a ring whose next
// sequence number is beyond them), even if no record follows yet. How it reports them:
//
//   - with OnLoss set, by calling that function, from Next, before Next delivers any
//     record after the loss (or before it waits for one);
//   - otherwise with the next record: Loss reports the records lost just before it.
//
// A Follower holds the segment it reads open, so the producer removing it does not cut
// the follower off. A Follower started before its ring exists waits for it, and then
// expects every record from sequence 1 on (or from Selection.From). It wakes on inotify
// events on the ring directory and polls as a fallback. A Follower is not safe for
// concurrent use; OnLoss and OnWait functions run on the goroutine that calls Next.
type Follower struct {
	r     *Ring // the ring being read: the caller's, or one the follower reopened
	owned bool  // r was opened by the follower and is closed by it
	snap  *Snapshot
	cur   *openSegment // the segment read from; nil before the first
	c     *cursor      // over cur; nil when cur is damaged
	// curDone is set when nothing more is read from cur: read to its end, damaged, or
	// abandoned.
	curDone bool
	// next is the next sequence number expected: 0 while the follower expects none yet
	// (before the first record of a selection without From).
	next uint64
	// known is the highest next sequence number the follower has seen the ring reach,
	// in records or manifests; a ring whose next sequence is below it was created anew.
	known uint64
	wake  *waker
	rec   *segment.Record // the current record; nil before the first
	// snapRec holds a record delivered from snap.
	snapRec segment.Record
	loss    Loss // reported with the current record
	lossy   bool
	pend    Loss // learnt, not reported yet
	pended  bool
	onLoss  func(Loss)
	err     error
	// damage is set when err is damage confined to one segment, which SkipDamaged
	// moves past.
	damage bool
	idle   func()
	spin   time.Duration // see Spin
	// spinEnd is when spinning on the manifest for the segment after a sealed one
	// stops; zero when not spinning on it.
	spinEnd time.Time
	// recheck asks for the manifest to be read after the next scan of the current
	// segment comes up empty.
	recheck bool
	// restarted is set when the ring was created anew and the follower started over
	// with it; reported with the next record.
	restarted, restartedNow bool
}

// Restarted reports whether the current record is the first one of a ring that was
// created anew (its sequence numbers start again) since the previous record.
func (f *Follower) Restarted() bool { return f.restartedNow }

// OnWait sets a function the Follower calls each time it is about to wait for new
// records, for instance to flush buffered output.
func (f *Follower) OnWait(fn func()) { f.idle = fn }

// Spin makes the Follower, once it has delivered everything the segment it reads holds,
// watch that segment's memory for the next record for up to d, busily, before it sleeps
// until inotify or the poll timer wakes it. A record then reaches the caller within
// microseconds of its append, rather than after an inotify event has woken the process,
// which takes tens of microseconds to a millisecond. The price is a CPU kept busy for d
// after every record: with records coming more often than every d, a whole CPU, all the
// time. For a reader with a core to spare; zero, the default, never spins.
func (f *Follower) Spin(d time.Duration) { f.spin = d }

// OnLoss sets a function the Follower calls with each loss as soon as it learns of it,
// before it delivers any later record; Loss then reports nothing. Consecutive losses
// learnt together are reported as one range.
func (f *Follower) OnLoss(fn func(Loss)) { f.onLoss = fn }

// Follow returns a Follower that starts with the records sel selects. When the ring does
// not exist yet, it waits for it and expects every record from sequence max(sel.From, 1)
// on.
func (r *Ring) Follow(sel Selection) (*Follower, error) {
	f := &Follower{r: r, wake: newWaker(r.dir.Path(), true), next: sel.From}
	snap, err := r.Snapshot(sel)
	switch {
	case errors.Is(err, ErrNoRing):
		// Every record the ring will ever hold is new to this follower.
		f.next = max(sel.From, 1)
	case err != nil:
		f.wake.close()
		return nil, err
	default:
		snap.end, snap.none = 0, false // a follower goes on past the newest record
		f.snap = snap
	}
	return f, nil
}

// Next waits for the next record and reports whether there is one. It returns false
// when ctx is done (Err then returns ctx.Err(); Next may be called again, with another
// context, and goes on where it was) or on an error: damage, which SkipDamaged moves
// past, or a manifest that cannot be read.
func (f *Follower) Next(ctx context.Context) bool {
	f.lossy, f.restartedNow = false, false
	if errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded) {
		f.err = nil
		if f.snap != nil {
			f.snap.err = nil
		}
	}
	for f.err == nil {
		if f.snap != nil {
			f.snap.ctx = ctx
			if f.snap.Next() {
				if f.next != 0 && f.snap.filtered >= f.next {
					f.next = f.snap.filtered + 1 // left out by Since: not lost
				}
				f.snapRec = f.snap.Record()
				f.deliver(&f.snapRec)
				return true
			}
			if f.err = f.snap.Err(); f.err != nil {
				f.damage = f.err != ctx.Err()
				return false
			}
			f.endSnapshot()
			continue
		}
		if f.cur != nil && !f.curDone {
			if f.read(ctx) {
				return true
			}
			if f.err != nil {
				return false
			}
		}
		if err := ctx.Err(); err != nil {
			f.err = err
			return false
		}
		if f.cur == nil || f.curDone || f.recheck {
			f.recheck = false
			moved, err := f.advance(ctx)
			if err != nil {
				f.err = err
				return false
			}
			if moved {
				continue
			}
		}
		f.flushLoss()
		if f.idle != nil {
			f.idle()
		}
		if f.spinFor(ctx) {
			continue
		}
		if f.wake.watchFile(f.hotFile()) {
			continue // look once more, now that a change will wake the follower
		}
		manifest, err := f.wake.wait(ctx)
		f.spinEnd = time.Time{}
		if err != nil {
			f.err = err
			return false
		}
		f.recheck = manifest
	}
	return false
}

// spinFor spins, with Spin set, while the follower has nothing to deliver: it watches
// the current segment for up to f.spin for a commit word where the next record goes, or
// the sealed word set; past a sealed segment, it has the loop read the manifest again
// until the next segment is listed, for up to f.spin. It reports whether the loop should
// look again rather than wait.
func (f *Follower) spinFor(ctx context.Context) bool {
	c := f.c
	if f.spin <= 0 || f.cur == nil {
		return false
	}
	if f.curDone || c == nil {
		// The producer seals a segment before it lists the next.
		now := time.Now()
		if f.spinEnd.IsZero() {
			f.spinEnd = now.Add(f.spin)
		}
		if now.Before(f.spinEnd) && ctx.Err() == nil {
			f.recheck = true
			return true
		}
		return false
	}
	off := c.Offset()
	full := off+8 > len(c.seg.b) // only the seal can come
	deadline := time.Now().Add(f.spin)
	for i := 1; ; i++ {
		// A fault (the file truncated) counts as a change: reading reports it.
		if !full {
			if w, ok := c.peek(off); !ok || w != 0 {
				return true
			}
		}
		if w, ok := c.peek(segment.OffSealed); !ok || w != 0 {
			return true
		}
		if i%128 == 0 && (ctx.Err() != nil || !time.Now().Before(deadline)) {
			return false
		}
	}
}

// hotFile returns the file of the segment the follower reads while it may yet grow, for
// the waker to watch directly, or nil.
func (f *Follower) hotFile() *os.File {
	if f.cur == nil || f.curDone {
		return nil
	}
	return f.cur.f
}

// endSnapshot moves from the snapshot to following: the next record expected is the one
// after what the snapshot scanned, or, when nothing was expected, the ring's next.
func (f *Follower) endSnapshot() {
	s := f.snap
	if s.seen > 0 {
		f.next = max(f.next, s.seen+1)
	}
	if f.next == 0 {
		f.next = max(s.floor, 1)
	}
	f.known = max(f.known, s.floor, s.seen+1)
	s.Close()
	f.snap = nil
}

// read delivers the next record of the current segment, if there is one now.
func (f *Follower) read(ctx context.Context) bool {
	c := f.c
	c.ctx = ctx
	// Records before the next one expected were delivered or passed over already.
	if !c.skipTo(ctx, f.next) {
		return false
	}
	if c.next(true) {
		f.deliver(c.sc.Current())
		return true
	}
	if err := c.Err(); err != nil {
		f.damaged(err)
		return false
	}
	f.known = max(f.known, c.NextSeq())
	if c.Done() {
		f.curDone = true
		f.cur.release()
	}
	return false
}

// damaged stops the follower on damage in the current segment, which it reads no more.
func (f *Follower) damaged(err error) {
	f.err, f.damage = err, true
	f.curDone = true
	f.cur.release()
}

// deliver makes r the current record, noting any gap before it. r stays the reader's
// own (a Scanner's, or snapRec) until the next call to Next.
func (f *Follower) deliver(r *segment.Record) {
	if f.next != 0 && r.Seq > f.next {
		f.lost(r.Seq - 1)
	}
	if f.pended {
		if f.onLoss != nil {
			f.onLoss(f.pend)
		} else {
			f.loss, f.lossy = f.pend, true
		}
		f.pended = false
	}
	f.restartedNow, f.restarted = f.restarted, false
	f.next = r.Seq + 1
	f.known = max(f.known, f.next)
	f.rec = r
	f.spinEnd = time.Time{}
}

// lost notes that the records from f.next to to will never be delivered, and moves
// f.next past them.
func (f *Follower) lost(to uint64) {
	if f.next == 0 || to < f.next {
		return
	}
	if f.pended {
		f.pend.To = to // f.next was f.pend.To + 1
	} else {
		f.pend, f.pended = Loss{From: f.next, To: to}, true
	}
	f.next = to + 1
}

// flushLoss reports a loss learnt while no record follows it yet, to OnLoss.
func (f *Follower) flushLoss() {
	if f.pended && f.onLoss != nil {
		f.onLoss(f.pend)
		f.pended = false
	}
}

// advance reads the manifest and opens the segment that holds the next record expected,
// or the first one after it (the records in between are lost), noting as lost the
// records of listed segments found gone. It reports whether there is something to read
// now: it moved to another segment, or the current one was sealed and may hold records
// not read yet. It starts over when the ring was created anew.
func (f *Follower) advance(ctx context.Context) (bool, error) {
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
	if f.cur != nil && !f.curDone && f.cur.sealedNow() {
		// The producer seals a segment before it lists a newer one: read this one to
		// its end first.
		return true, nil
	}
	if f.anew(ctx, m) {
		f.startOver()
	}
	f.known = max(f.known, m.NextSeq())
	if hot, ok := m.Hot(); ok {
		f.known = max(f.known, hot.FirstSeq)
	}
	for _, e := range m.Segments {
		if e.Sealed && e.LastSeq < f.next {
			continue
		}
		if f.isCur(e) {
			f.cur.entry = e
			if !f.curDone || !e.Sealed {
				// Reading it, or waiting for a damaged hot segment to be sealed, to
				// learn how many of its records are lost.
				return false, nil
			}
			f.lost(e.LastSeq)
			continue
		}
		f.lost(e.FirstSeq - 1)
		s, err := f.r.open(e, m.SegmentSize)
		if err == errMissing {
			if !e.Sealed {
				return false, nil // the hot segment's file is gone: wait for the manifest to say more
			}
			f.lost(e.LastSeq) // taken or retired
			continue
		}
		if err != nil {
			return false, err
		}
		// Another segment: the current one, if any, is finished or was abandoned (a
		// hot segment no longer listed, left by a producer that stopped or died).
		f.cur.close()
		f.cur, f.c, f.curDone = s, nil, false
		if s.damage == nil {
			f.c, s.damage = newCursor(s)
		}
		if s.damage != nil {
			f.curDone, f.damage = true, true
			return false, s.damage
		}
		return true, nil
	}
	return false, nil
}

// isCur reports whether e lists the segment the follower holds.
func (f *Follower) isCur(e segment.Entry) bool {
	return f.cur != nil && e.Number() == f.cur.num && (f.cur.f == nil || f.cur.is(f.r.dir, e.Name))
}

// anew reports whether the ring of manifest m was created anew: its next sequence number
// is below what the follower already saw it reach. The next sequence number is the last
// sealed segment's last plus one, or the hot segment's first plus its records; the hot
// segment is scanned for that only when its first sequence is below what the follower
// saw and it is not the segment the follower is reading.
func (f *Follower) anew(ctx context.Context, m *segment.Manifest) bool {
	hot, ok := m.Hot()
	if !ok {
		return m.NextSeq() < f.known
	}
	if hot.FirstSeq >= f.known || f.isCur(hot) {
		return false
	}
	s, err := f.r.open(hot, m.SegmentSize)
	if err != nil {
		return false // gone, or out of descriptors: cannot tell now
	}
	defer s.close()
	if s.damage != nil {
		return false
	}
	c, err := newCursor(s)
	if err != nil {
		return false
	}
	if !c.skipTo(ctx, f.known) {
		return false // cannot tell yet; the next look will
	}
	return c.NextSeq() < f.known
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
	f.wake = newWaker(nr.dir.Path(), true)
	f.startOver()
	return nil
}

// startOver forgets the position in a ring that no longer exists, and what was lost in
// it, and expects the new ring's records from its first.
func (f *Follower) startOver() {
	f.cur.close()
	f.cur, f.c, f.curDone = nil, nil, false
	f.next, f.known = 1, 0
	f.pended = false
	f.restarted = true
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (f *Follower) Record() segment.Record {
	if f.rec == nil {
		return segment.Record{}
	}
	return *f.rec
}

// Loss reports the records lost just before the current one, if any. With OnLoss set,
// it reports nothing: losses go to that function.
func (f *Follower) Loss() (Loss, bool) { return f.loss, f.lossy }

// SkipDamaged moves past the rest of a damaged segment after Next stopped on damage (a
// *segment.CorruptionError, or an error naming a listed segment that is not a regular
// file or cannot be opened); the next call to Next goes on with the next segment,
// and the records skipped are reported as lost. It reports whether there was such an
// error to move past: a cancelled context or a manifest that cannot be read is not one.
func (f *Follower) SkipDamaged() bool {
	if f.err == nil || !f.damage {
		return false
	}
	f.err, f.damage = nil, false
	if f.snap != nil {
		if seg := f.snap.current(); seg != nil {
			if f.next == 0 {
				f.next = seg.entry.FirstSeq // its records are lost: none were expected before
			}
			if seg.entry.Sealed {
				f.lost(seg.entry.LastSeq)
			} else {
				// Hold a damaged hot segment as the current one, done with: the
				// follower knows it when the manifest lists it again, reads no more
				// of it, and learns how many of its records are lost once it is
				// sealed.
				f.cur.close()
				f.cur, f.c, f.curDone = seg, nil, true
				f.snap.segs[f.snap.i] = nil
				seg.release()
			}
		}
		f.snap.SkipDamaged()
	}
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
