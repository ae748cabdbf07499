package publish

import "sync"

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
// with w.mu held.
func (w *Writer) wantSpare() {
	if w.hot == nil || w.tight || (w.spare != nil && w.spare.num == w.hot.num+1) {
		return
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
		w.retiring++
	default:
		release(h)
	}
}

// released counts a retired mapping as released, once its munmap is done. Called with
// w.mu held.
func (w *Writer) released() {
	w.retiring--
	w.cond.Broadcast()
}

// preparer allocates the next segment ahead of need, so that a roll only writes a header
// and renames, and releases the mappings of sealed segments. A spare that cannot be
// allocated (a full file system) is simply not there: the roll then allocates, and
// makes room, itself.
func (w *Writer) preparer() {
	for {
		select {
		case <-w.stop:
			return
		case h := <-w.retired:
			release(h)
			w.mu.Lock()
			w.released()
			w.mu.Unlock()
		case num := <-w.prepare:
			w.mu.Lock()
			if w.closed || w.tight || w.spare != nil {
				w.mu.Unlock()
				continue
			}
			w.preparing, w.preparingNum = true, num
			w.mu.Unlock()
			sp, err := w.allocate(num, ".spare")
			if err == nil {
				touch(sp.b)
			}
			w.mu.Lock()
			w.preparing = false
			w.cond.Broadcast()
			switch {
			case err != nil:
			case w.closed || w.tight || w.spare != nil || w.hot == nil || w.hot.num+1 != num:
				w.discard(sp)
			default:
				w.spare = sp
			}
			w.mu.Unlock()
		}
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
