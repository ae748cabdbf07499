package serve

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/watch"
)

// errNoRingDir means the ring's path names nothing (yet): a Server waits for a
// producer to create the ring there.
var errNoRingDir = errors.New("no ring directory")

// ringSource gives the handlers of a Server the ring directory at a path, opened
// on first use and opened again whenever the path has come to name another directory
// than the one held (the ring was removed and created anew), or the one held was removed.
// A directory that does not exist is not an error to wait on forever: every acquire looks
// again. Its methods are safe for concurrent use.
type ringSource struct {
	path string

	mu     sync.Mutex
	cur    *ringHandle // the directory at path as last seen; nil before the first acquire
	closed bool        // close was called: acquire fails with ErrClosed
}

// ringHandle is one opened ring directory: the reader and, on the same directory, the
// ringdir handle used to ask for the producer's lock. It is closed once the source has
// let go of it (it is no longer current) and every user has released it.
type ringHandle struct {
	src  *ringSource
	ring *watch.Ring
	dir  *ringdir.Dir
	dev  uint64
	ino  uint64
	refs int // users, and one more while it is the source's current handle
}

func newRingSource(path string) *ringSource { return &ringSource{path: path} }

// acquire returns the ring directory that the path names now. The caller must release
// it, after closing every snapshot and follower obtained from its ring. When the path
// names nothing, the error wraps errNoRingDir and os.ErrNotExist; after close, it is
// ErrClosed.
func (s *ringSource) acquire() (*ringHandle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur != nil && s.cur.current() {
		s.cur.refs++
		return s.cur, nil
	}
	if s.cur != nil {
		s.cur.unref()
		s.cur = nil
	}
	h, err := openRingHandle(s.path)
	if err != nil {
		return nil, err
	}
	h.src, h.refs = s, 2
	s.cur = h
	return h, nil
}

// close lets go of the current directory, which is closed once its users release it,
// and makes acquire fail from then on.
func (s *ringSource) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.cur != nil {
		s.cur.unref()
		s.cur = nil
	}
}

// release gives back a handle obtained from acquire.
func (h *ringHandle) release() {
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	h.unref()
}

// unref drops one reference and closes the handle with the last. Called with src.mu
// held (or before the handle is shared).
func (h *ringHandle) unref() {
	if h.refs--; h.refs == 0 {
		h.ring.Close()
		h.dir.Close()
	}
}

// current reports whether the handle's directory is still the one at the path: it has
// not been removed, and the path names it. A path that cannot be examined is taken as
// changed, so that the next open reports why.
func (h *ringHandle) current() bool {
	var held, now unix.Stat_t
	if unix.Fstat(h.dir.Fd(), &held) != nil || held.Nlink == 0 {
		// Removed: a file system may give the inode number to the next directory
		// made there, so the comparison below alone could not tell.
		return false
	}
	if unix.Stat(h.dir.Path(), &now) != nil {
		return false
	}
	return uint64(now.Dev) == h.dev && uint64(now.Ino) == h.ino
}

// openRingHandle opens the ring directory at path twice, as a reader and as a ringdir
// handle, and makes sure both are the same directory (the path may be replaced between
// the two opens).
func openRingHandle(path string) (*ringHandle, error) {
	for attempt := 0; ; attempt++ {
		d, err := ringdir.Open(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w at %s: %w", errNoRingDir, path, err)
			}
			return nil, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(d.Fd(), &st); err != nil {
			d.Close()
			return nil, &os.PathError{Op: "stat", Path: path, Err: err}
		}
		r, err := watch.Open(path)
		if err != nil {
			d.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w at %s: %w", errNoRingDir, path, err)
			}
			return nil, err
		}
		h := &ringHandle{ring: r, dir: d, dev: uint64(st.Dev), ino: uint64(st.Ino), refs: 1}
		if h.current() {
			return h, nil
		}
		h.unref()
		if attempt >= 10 {
			return nil, fmt.Errorf("open ring %s: the directory keeps being replaced", path)
		}
	}
}

// noRing reports whether err means that there is no ring at the path yet: no directory,
// or a directory with no manifest in it.
func noRing(err error) bool {
	return errors.Is(err, errNoRingDir) || errors.Is(err, watch.ErrNoRing)
}
