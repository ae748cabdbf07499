package watch

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

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
//
// A follower's waker also watches the segment it reads, directly (watchFile): an inotify
// instance of its own, which the follower's goroutine waits on itself, in a blocking
// ppoll, as a C reader would. A record's wake-up write then wakes the follower's thread
// in one step. Through fsnotify it takes more: the event wakes Go's poller, which readies
// fsnotify's goroutine, which hands the event over a channel to the follower's; the same
// holds for a descriptor of the waker's own read through Go's poller, which then readies
// the follower's goroutine and fsnotify's at once, to run one after the other on a small
// machine (docs/BENCHMARKS.md, "Wake latency"). fsnotify still watches the directory, for
// the manifest and the segments coming and going: its events are passed on by a
// goroutine of the waker's (forward), which ends the follower's ppoll through an eventfd.
// The price is a thread per follower blocked in the kernel while it waits.
type waker struct {
	w        *fsnotify.Watcher // nil when inotify is unavailable
	timer    *time.Timer
	fastTill time.Time
	// Stats, for tests and reports: seg counts the events of the direct watch.
	events, overflows, polls, seg int

	// The direct watch; in is -1 without one.
	in      int         // the waker's own inotify instance, non-blocking
	kick    int         // an eventfd whose count ends a wait under way
	wd      int         // in's watch of the followed segment, -1 when none
	watched *os.File    // the segment watched, or being looked at for one
	direct  atomic.Bool // wd is a watch: fsnotify's write events are the same events
	flags   atomic.Uint32
	stop    chan struct{} // closed by closeDirect: forward returns
	done    chan struct{} // closed when forward has returned
	buf     [4096]byte
}

// What forward has passed on since the last wait, in waker.flags.
const (
	flagEvent    = 1 << iota // an event on the directory
	flagManifest             // one that may mean a new manifest
	flagOverflow             // fsnotify's queue overflowed, or it failed
	flagClosed               // fsnotify's watcher stopped
)

// newWaker watches dir. When inotify is unavailable (no instances or watches left, or
// an unsupported file system) it falls back to polling fast. With direct set, it can
// also watch a segment directly (watchFile); without an inotify instance to spare for
// that, it does without.
func newWaker(dir string, direct bool) *waker {
	k := &waker{timer: time.NewTimer(time.Hour), in: -1, kick: -1, wd: -1}
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
	if direct && !noDirect {
		in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err == nil {
			kick, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
			if err != nil {
				unix.Close(in)
			} else {
				k.in, k.kick = in, kick
				k.stop, k.done = make(chan struct{}), make(chan struct{})
				go k.forward()
			}
		}
	}
	return k
}

var farFuture = time.Unix(1<<62, 0)

// noInotify forces the polling fallback; tests set it. noDirect leaves out the direct
// watch of segments.
var noInotify, noDirect = false, false

func (k *waker) interval() time.Duration {
	if time.Now().Before(k.fastTill) {
		return FastPollInterval
	}
	return PollInterval
}

// isManifest reports whether ev may mean a new manifest.
func isManifest(ev fsnotify.Event) bool {
	return filepath.Base(ev.Name) == segment.ManifestName || ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0
}

// wait blocks until an event arrives, the poll interval passes or ctx is done. It
// reports whether the manifest may have changed (an event naming it, an overflow, or a
// poll), which is when a follower should read the manifest again.
func (k *waker) wait(ctx context.Context) (manifest bool, err error) {
	if k.in >= 0 {
		return k.waitDirect(ctx)
	}
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
		manifest = isManifest(ev)
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
			if isManifest(ev) {
				manifest = true
			}
		default:
			return manifest, nil
		}
	}
}

// forward is the direct waker's goroutine: it passes fsnotify's events on the directory
// to waitDirect, as flags, and interrupts its wait. Write events are left out while a
// segment is watched directly: the producer writes only to the hot segment, which is the
// one watched. It returns when close closes k.stop, or when fsnotify's watcher stops.
func (k *waker) forward() {
	defer close(k.done)
	for {
		var f uint32
		select {
		case <-k.stop:
			return
		case ev, ok := <-k.w.Events:
			switch {
			case !ok:
				f = flagClosed
			case ev.Op == fsnotify.Write && k.direct.Load():
				continue
			case isManifest(ev):
				f = flagEvent | flagManifest
			default:
				f = flagEvent
			}
		case _, ok := <-k.w.Errors:
			f = flagOverflow
			if !ok {
				f = flagClosed
			}
		}
		k.flags.Or(f)
		k.interrupt()
		if f == flagClosed {
			return
		}
	}
}

// interrupt ends a wait of waitDirect under way, or the next one. It is called only
// while the eventfd is open: by forward, and by the function waitDirect leaves with its
// context, which waitDirect waits for.
func (k *waker) interrupt() {
	one := [8]byte{1}
	unix.Write(k.kick, one[:]) // EAGAIN only with 2^64-2 kicks unread: it is ended anyway
}

// took turns flags passed on by forward into wait's result.
func (k *waker) took(f uint32) (manifest bool, err error) {
	if f&flagEvent != 0 {
		k.events++
	}
	if f&(flagOverflow|flagClosed) != 0 {
		k.overflows++
		k.fastTill = time.Now().Add(fastPollFor)
		if f&flagClosed != 0 {
			k.fastTill = farFuture
		}
		return true, nil
	}
	return f&flagManifest != 0, nil
}

// waitDirect is wait for a waker with a direct watch: it waits in ppoll until an event on
// the watched segment, an event forward passed on, the poll interval or ctx ends it.
func (k *waker) waitDirect(ctx context.Context) (manifest bool, err error) {
	if f := k.flags.Swap(0); f != 0 {
		return k.took(f)
	}
	deadline := time.Now().Add(k.interval())
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() { k.interrupt(); close(fired) })
		defer func() {
			if !stop() {
				<-fired // it writes to the eventfd: let it finish before the waker may close
			}
		}()
	}
	fds := []unix.PollFd{{Fd: int32(k.in), Events: unix.POLLIN}, {Fd: int32(k.kick), Events: unix.POLLIN}}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			k.polls++
			return true, nil
		}
		ts := unix.NsecToTimespec(int64(left))
		if _, err := unix.Ppoll(fds, &ts, nil); err != nil && err != unix.EINTR {
			// The descriptors failed: wait as a waker without a direct watch does.
			k.closeDirect()
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		// The eventfd is emptied before the flags are taken: forward sets its flags
		// before it writes, so flags set after the swap below leave a count that ends
		// the next ppoll.
		if fds[1].Revents != 0 {
			var cnt [8]byte
			unix.Read(k.kick, cnt[:])
		}
		f := k.flags.Swap(0)
		mine, m := false, false
		if fds[0].Revents != 0 {
			n, rerr := unix.Read(k.in, k.buf[:])
			switch {
			case n > 0:
				mine, m = k.parse(k.buf[:n])
			case rerr != unix.EAGAIN && rerr != unix.EINTR:
				k.closeDirect()
				return true, nil
			}
		}
		switch {
		case mine && f == 0:
			k.seg++
			k.events++
			return m, nil
		case mine:
			k.seg++
			manifest, err = k.took(f)
			return manifest || m, err
		case f != 0:
			return k.took(f)
		}
		// A kick whose flags an earlier wait already took, or events of a watch no
		// longer used: wait on, until the same deadline.
	}
}

// parse reads inotify events of the direct watch. It reports whether any is of the
// current watch, and whether one may mean that the segment is gone or the queue
// overflowed, when the manifest should be read again.
func (k *waker) parse(b []byte) (mine, manifest bool) {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		size := unix.SizeofInotifyEvent + int(ev.Len)
		if size > len(b) {
			break
		}
		b = b[size:]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			k.overflows++
			k.fastTill = time.Now().Add(fastPollFor)
			mine, manifest = true, true
		case int(ev.Wd) != k.wd:
		case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0:
			mine, manifest = true, true
		default:
			mine = true
		}
	}
	return mine, manifest
}

// watchFile watches f, the segment the follower reads, directly; nil watches none. It
// reports whether it began to watch a file it did not watch before: a change to it
// before then was not seen, so the follower should look at it once more before it
// waits. A waker without a direct watch does nothing.
func (k *waker) watchFile(f *os.File) bool {
	if k.in < 0 || f == k.watched {
		return false
	}
	k.watched = f
	if k.wd >= 0 {
		unix.InotifyRmWatch(k.in, uint32(k.wd))
		k.wd = -1
		k.direct.Store(false)
	}
	if f == nil {
		return false
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	added := false
	sc.Control(func(fd uintptr) {
		// The open file, by way of /proc: the path may be renamed by a taker.
		wd, err := unix.InotifyAddWatch(k.in, "/proc/self/fd/"+strconv.Itoa(int(fd)),
			unix.IN_MODIFY|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF)
		if err == nil {
			k.wd, added = wd, true
			k.direct.Store(true)
		}
	})
	return added
}

// closeDirect stops the direct watch and forward.
func (k *waker) closeDirect() {
	if k.in < 0 {
		return
	}
	close(k.stop)
	<-k.done
	unix.Close(k.in)
	unix.Close(k.kick)
	k.in, k.kick, k.wd, k.watched = -1, -1, -1, nil
	k.direct.Store(false)
}

func (k *waker) close() {
	k.closeDirect()
	if k.w != nil {
		k.w.Close()
	}
}
