package publish

import (
	"sync"

	"github.com/filering/filering/segment"
)

// start starts the Writer's two goroutines: background (wake-up writes, seal-after) and
// preparer (spare segments, releasing old mappings). Both stop when w.stop is closed;
// w.done is closed once both have returned.
func (w *Writer) start() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.background() }()
	go func() { defer wg.Done(); w.preparer() }()
	go func() { wg.Wait(); close(w.done) }()
	w.mu.Lock()
	w.wantSpare()
	w.mu.Unlock()
}

// wantSpare asks the preparer for a spare for the segment after the hot one. Called
// with w.mu held. A request the preparer has not taken yet is replaced: it names a
// segment the writer has rolled past.
func (w *Writer) wantSpare() {
	if w.hot == nil || w.tight.Load() || (w.spare != nil && w.spare.num == w.hot.num+1) {
		return
	}
	select {
	case <-w.prepare:
	default:
	}
	select {
	case w.prepare <- w.hot.num + 1:
	default:
	}
}

// retire hands the mapping of a sealed segment to the preparer to release, so that the
// munmap stays off the append path. Called with w.mu held.
func (w *Writer) retire(h *hotSegment) {
	select {
	case w.retired <- h:
		w.held.Add(1)
	default:
		w.releaseHot(h)
	}
}

// removeLater hands the file of a segment the manifest no longer lists to the preparer
// to keep for reuse or remove (retireFile): either costs tens of microseconds, which
// stay off the append path. Called with w.mu held.
func (w *Writer) removeLater(name string) {
	select {
	case w.doomed <- name:
		w.held.Add(1)
	default:
		w.retireFile(name)
	}
}

// remove removes a file of the ring and logs a failure. A segment's index goes with
// it, whether or not a taker took the segment file first: into the pool of free index
// files when the writer holds it (removeIndex).
func (w *Writer) remove(name string) {
	if err := w.fs.remove(name); err != nil {
		w.opts.Logf("%v", err)
	}
	if n, ok := segment.ParseName(name, segment.SegmentSuffix); ok {
		if err := w.removeIndex(n); err != nil {
			w.opts.Logf("%v", err)
		}
	}
}

// freedOne counts one mapping released or one file removed by the preparer, and wakes
// freeHeld when it waits for them. Called without w.mu.
func (w *Writer) freedOne() {
	if w.held.Add(-1) == 0 && w.awaitFree.Load() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// preparer makes the next segment ahead of need, from a kept file or a new one, so that
// a roll only writes a header and renames; releases the mappings of sealed segments; and
// keeps or removes the files of segments the manifest no longer lists. A spare that cannot be
// allocated (a full file system) is simply not there: the roll then allocates, and
// makes room, itself. It takes w.mu only to hand a spare over: a producer appending in
// a tight loop holds w.mu most of the time, and a goroutine waiting for it waits at least
// for a record's append, and for the tens of microseconds of its yields and sleep
// (lock), while a segment of large records fills in less.
func (w *Writer) preparer() {
	for {
		// The spare wanted next may be made of the file of a removed segment, which
		// can be kept only once its mapping is released (the lease would be refused)
		// and whose index goes to the pool only once the segment is sealed here
		// (sealedIndex): mappings to release go first, files to keep next, then the
		// spare.
		select {
		case h := <-w.retired:
			w.releaseHot(h)
			w.freedOne()
			continue
		default:
		}
		select {
		case name := <-w.doomed:
			w.retireFile(name)
			w.freedOne()
			continue
		default:
		}
		select {
		case num := <-w.prepare:
			w.prepareSpare(num)
			continue
		default:
		}
		select {
		case <-w.stop:
			return
		case h := <-w.retired:
			w.releaseHot(h)
			w.freedOne()
		case name := <-w.doomed:
			w.retireFile(name)
			w.freedOne()
		case num := <-w.prepare:
			w.prepareSpare(num)
		}
	}
}

// prepareSpare allocates segment num and offers it as the spare. Called by the preparer
// without w.mu.
func (w *Writer) prepareSpare(num uint64) {

	if w.tight.Load() {
		return
	}
	w.preparing.Store(num)
	sp, err := w.allocate(num, ".spare")
	if err == nil && !sp.reused {
		touch(sp.b)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.preparing.Store(0)
	w.cond.Broadcast()
	switch {
	case err != nil:
	case w.closed || w.tight.Load() || w.hot == nil || w.hot.num+1 != num:
		w.discard(sp)
	default:
		if w.spare != nil {
			w.discard(w.spare)
		}
		w.spare = sp
	}
}

// touch writes a zero to every page of a fresh segment. The first write to a newly
// allocated page can cost a hundred times a later one (the kernel makes the page
// writable and, in a virtual machine, the host backs it); paying that here, off the
// append path, keeps Append fast. The bytes are zero already, so nothing changes.
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 0
	}
}
