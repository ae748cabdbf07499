package watch

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/filering/filering/segment"
)

// Poll intervals: a follower rescans at least this often even without an event, and
// more often while inotify is unavailable or its queue has overflowed.
const (
	PollInterval     = time.Second
	FastPollInterval = 100 * time.Millisecond
	// fastPollFor is how long a follower keeps polling fast after an overflow.
	fastPollFor = 10 * time.Second
)

// waker waits for something to change in a ring directory: an inotify event on the
// directory, or the poll timer. Events are hints; the timer makes sure that a missed
// event can never stall a reader. The waker owns the fsnotify watcher and its goroutine;
// close stops them.
type waker struct {
	w        *fsnotify.Watcher // nil when inotify is unavailable
	timer    *time.Timer
	fastTill time.Time
	// Stats, for tests and reports.
	events, overflows, polls int
}

// newWaker watches dir. When inotify is unavailable (no instances or watches left, or
// an unsupported file system) it falls back to polling fast.
func newWaker(dir string) *waker {
	k := &waker{timer: time.NewTimer(time.Hour)}
	k.timer.Stop()
	if noInotify {
		k.fastTill = farFuture
		return k
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(dir); err != nil {
			w.Close()
		}
	}
	if err != nil {
		k.fastTill = farFuture
		return k
	}
	k.w = w
	return k
}

var farFuture = time.Unix(1<<62, 0)

// noInotify forces the polling fallback; tests set it.
var noInotify = false

func (k *waker) interval() time.Duration {
	if time.Now().Before(k.fastTill) {
		return FastPollInterval
	}
	return PollInterval
}

// wait blocks until an event arrives, the poll interval passes or ctx is done. It
// reports whether the manifest may have changed (an event naming it, an overflow, or a
// poll), which is when a follower should read the manifest again.
func (k *waker) wait(ctx context.Context) (manifest bool, err error) {
	k.timer.Reset(k.interval())
	defer k.timer.Stop()
	var events chan fsnotify.Event
	var errs chan error
	if k.w != nil {
		events, errs = k.w.Events, k.w.Errors
	}
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case ev, ok := <-events:
		if !ok {
			k.w, k.fastTill = nil, farFuture
			return true, nil
		}
		k.events++
		manifest = filepath.Base(ev.Name) == segment.ManifestName || ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0
	case _, ok := <-errs:
		// Queue overflow or any watcher error: rescan everything and poll fast for a while.
		k.overflows++
		if !ok {
			k.w = nil
		}
		k.fastTill = time.Now().Add(fastPollFor)
		return true, nil
	case <-k.timer.C:
		k.polls++
		return true, nil
	}
	// Coalesce: drain what else is queued, so a burst costs one rescan.
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return true, nil
			}
			k.events++
			if filepath.Base(ev.Name) == segment.ManifestName {
				manifest = true
			}
		default:
			return manifest, nil
		}
	}
}

func (k *waker) close() {
	if k.w != nil {
		k.w.Close()
	}
}
