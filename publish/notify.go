package publish

import (
	"encoding/binary"
	"time"

	"github.com/filering/filering/segment"
)

// wakeInterval is the least time between two wake-up writes. A burst of appends costs one
// write per interval instead of one per record; a record that follows a quiet period is
// announced at once.
const wakeInterval = 100 * time.Microsecond

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
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
			w.wake()
			pause.Reset(wakeInterval)
			select {
			case <-w.stop:
				return
			case <-pause.C:
			}
		case <-tick:
			w.sealIfOld()
		}
	}
}

// wake publishes the hot segment's committed word: an atomic store through the mapping,
// then a pwrite of the same 8 bytes, which inotify reports as IN_MODIFY. The segment is
// marked as being woken so that roll does not seal it while the pwrite is in flight
// (that would let the pwrite put back an older committed word).
func (w *Writer) wake() {
	w.mu.Lock()
	h := w.hot
	if h == nil || !w.pending {
		w.mu.Unlock()
		return
	}
	w.pending = false
	w.lastWake = w.clock.now()
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
}

// wakeNow makes the wake-up write for h in the caller's goroutine. Called with w.mu held
// and no wake-up write in flight.
func (w *Writer) wakeNow(h *hotSegment, now int64) {
	w.pending = false
	w.lastWake = now
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
