package publish

import (
	"encoding/binary"
	"time"

	"github.com/filering/filering/segment"
)

// Wake-up writes. A record appended wakeQuiet or more after the one before it is
// announced at once, from Append. Records that follow each other more closely are
// announced by the background goroutine: the first of them at once, the others at the
// end of a pause that starts at wakeMin and doubles, up to wakeMax, for as long as
// records keep coming. A short burst is thus announced within wakeMin of its end, and a
// sustained stream costs one write per wakeMax, not one per record, which matters on a
// small board: every write also wakes every follower.
const (
	wakeQuiet = 100 * time.Microsecond
	wakeMin   = 100 * time.Microsecond
	wakeMax   = time.Millisecond
)

// manifestRetry is how often appends try again to write a manifest that a full file
// system had no room for.
const manifestRetry = 10 * time.Millisecond

// background is one of the Writer's goroutines. It makes the wake-up writes that let inotify
// followers see records written through the mapping, and seals the hot segment when it
// reaches the SealAfter age. It stops when w.stop is closed.
func (w *Writer) background() {
	var tick <-chan time.Time
	if w.opts.SealAfter > 0 {
		t := time.NewTicker(max(w.opts.SealAfter/10, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	pause := time.NewTimer(0)
	<-pause.C
	interval, paused := wakeMin, false
	for {
		kick, ended := w.kick, (<-chan time.Time)(nil)
		if paused {
			kick, ended = nil, pause.C
		}
		select {
		case <-w.stop:
			return
		case <-kick:
			w.wake()
			interval, paused = wakeMin, true
			pause.Reset(interval)
		case <-ended:
			if w.wake() {
				// Records came during the pause: the stream goes on.
				interval = min(2*interval, wakeMax)
				pause.Reset(interval)
			} else {
				paused = false
			}
		case <-tick:
			w.sealIfOld()
		}
	}
}

// wake publishes the hot segment's committed word: an atomic store through the mapping,
// then a pwrite of the same 8 bytes, which inotify reports as IN_MODIFY. The segment is
// marked as being woken so that roll does not seal it while the pwrite is in flight
// (that would let the pwrite put back an older committed word). It reports whether
// there were records to announce.
func (w *Writer) wake() bool {
	w.mu.Lock()
	h := w.hot
	if h == nil || !w.pending {
		w.mu.Unlock()
		return false
	}
	w.pending = false
	// A kick sent since is for the records announced here.
	select {
	case <-w.kick:
	default:
	}
	segment.SetCommitted(h.b, int64(h.off))
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(h.off))
	w.waking = h
	w.mu.Unlock()

	h.f.WriteAt(buf[:], segment.OffCommitted) // a hint only: a failure loses no record

	w.mu.Lock()
	w.waking = nil
	w.cond.Broadcast()
	w.mu.Unlock()
	return true
}

// wakeNow makes the wake-up write for h in the caller's goroutine. Called with w.mu held
// and no wake-up write in flight.
func (w *Writer) wakeNow(h *hotSegment) {
	w.pending = false
	select {
	case <-w.kick:
	default:
	}
	segment.SetCommitted(h.b, int64(h.off))
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(h.off))
	h.f.WriteAt(buf[:], segment.OffCommitted) // a hint only: a failure loses no record
}

// waitWake waits until no wake-up write to h is in flight. Called with w.mu held.
func (w *Writer) waitWake(h *hotSegment) {
	for w.waking == h {
		w.cond.Wait()
	}
}

// sealIfOld rolls the hot segment when it holds records and is older than SealAfter.
func (w *Writer) sealIfOld() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.hot == nil || w.hot.count == 0 || time.Since(w.hot.created) < w.opts.SealAfter {
		return
	}
	if err := w.roll(); err != nil {
		w.opts.Logf("%s: seal after %v: %v", w.dir.Path(), w.opts.SealAfter, err)
	}
}
