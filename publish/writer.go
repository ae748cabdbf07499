// Package publish is the producer side of a filering ring: it creates or reopens a ring
// directory, appends records to the hot segment through a shared mapping, rolls to a new
// segment when the hot one is full, and replaces the manifest atomically whenever the set
// of segments changes. See docs/FORMAT.md for what it writes.
//
// One producer at a time: Open takes the ring's lock and fails with a *LockedError naming
// the running producer's pid when another holds it.
//
// New segments are made of the files of segments retention removed, where no other
// process holds them open or mapped (docs/FORMAT.md, "Reusing a segment file"); while the
// writer holds a file's lease, a process that opens it makes the kernel send the
// writer's process SIGURG, which the Go runtime takes as its own preemption signal and
// otherwise ignores. FILERING_NO_REUSE=1 in the environment makes a new file for every
// segment.
package publish

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// Defaults for a new ring.
const (
	DefaultSegmentSize = 2 << 20 // a multiple of the huge page size: see ringdir.Huge
	DefaultSegments    = 8
	DefaultDirMode     = 0o750
	DefaultFileMode    = 0o640
)

// Errors returned by the producer. Use errors.Is.
var (
	// ErrLocked means another producer holds the ring; the error is a *LockedError.
	ErrLocked = errors.New("publish: ring is in use by another producer")
	// ErrClosed means the Writer was closed.
	ErrClosed = errors.New("publish: writer is closed")
	// ErrTooLarge means a record cannot fit in one segment of the ring.
	ErrTooLarge = errors.New("publish: record larger than a segment can hold")
	// ErrNoSpace means no new segment could be allocated, even after dropping every
	// older segment.
	ErrNoSpace = errors.New("publish: no space for a new segment")
	// ErrMismatch means the ring exists with a segment size other than the one asked for.
	ErrMismatch = errors.New("publish: ring exists with a different segment size")
	// ErrOptions means an option is out of range.
	ErrOptions = errors.New("publish: invalid option")
)

// LockedError reports a ring held by another producer.
type LockedError struct {
	Dir string
	PID int // 0 when the pid could not be read
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s: ring is in use by another producer", e.Dir)
	}
	return fmt.Sprintf("%s: ring is in use by another producer, pid %d", e.Dir, e.PID)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Options configure Open. The zero value is valid and gives the defaults.
type Options struct {
	// SegmentSize is the size of every segment of a new ring (DefaultSegmentSize when
	// 0). For an existing ring it must be 0 or equal to the ring's size.
	SegmentSize int64
	// Segments is how many segments the ring retains, the hot one included, from
	// segment.MinSegments to segment.MaxSegments. When 0, an existing ring keeps the
	// retention its manifest states and a new ring gets DefaultSegments. It may change
	// from one run to the next; a lower value drops the oldest segments beyond it, and
	// says so through Logf.
	Segments int
	// SealAfter, when positive, seals the hot segment once it is that old and holds at
	// least one record, so sealed data reaches takers even at low rates.
	SealAfter time.Duration
	// DirMode and FileMode are the permissions of a newly created ring directory (and of
	// each missing directory above it, which Open creates too) and of every file the
	// producer creates (DefaultDirMode, DefaultFileMode when 0). They are set
	// explicitly, not filtered through the umask.
	DirMode, FileMode os.FileMode
	// GID, when not 0, is the group given to the ring directory, to the directories
	// above it that Open creates, and to every file the producer creates. Use -1 for
	// "no change" explicitly, or leave 0.
	GID int
	// Logf receives notices the caller may want to show: recovery after a crash,
	// segments dropped to make room or to lower the retention. Nil discards them.
	Logf func(format string, args ...any)
}

func (o *Options) fill() error {
	if o.SegmentSize != 0 && !segment.ValidSize(o.SegmentSize) {
		return fmt.Errorf("%w: segment size %d: want a multiple of 4096 from 4 KiB to 1 GiB", ErrOptions, o.SegmentSize)
	}
	if o.Segments != 0 && (o.Segments < segment.MinSegments || o.Segments > segment.MaxSegments) {
		return fmt.Errorf("%w: %d segments: want %d to %d", ErrOptions, o.Segments, segment.MinSegments, segment.MaxSegments)
	}
	if o.SealAfter < 0 {
		return fmt.Errorf("%w: negative seal-after %v", ErrOptions, o.SealAfter)
	}
	if (o.DirMode|o.FileMode)&0o022 != 0 {
		return fmt.Errorf("%w: modes %04o and %04o let group or others write; only the producer may write a ring",
			ErrOptions, o.DirMode.Perm(), o.FileMode.Perm())
	}
	if o.DirMode == 0 {
		o.DirMode = DefaultDirMode
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Writer appends records to a ring. Its methods are safe for concurrent use; records
// appended concurrently are ordered by the sequence numbers Append returns.
type Writer struct {
	dir  *ringdir.Dir
	root *os.Root // for renameio
	fs   fileSystem
	lock *os.File
	opts Options
	id   string // the ring's identity

	mu         lock
	cond       sync.Cond // signalled when a wake-up write finishes; uses mu
	man        segment.Manifest
	hot        *hotSegment
	next       uint64 // sequence number of the next record
	closed     bool
	dirty      bool  // the manifest on disk is behind man
	pending    bool  // records were appended since the last wake-up write
	lastAppend int64 // when the last record was appended, ns since the epoch
	clock      clock // record timestamps
	waking     *hotSegment
	spare      *spare        // the next segment, allocated ahead of need
	idx        indexPool     // the indexes of sealed segments, and free index files
	kept       keptFiles     // files of removed segments, for new segments
	reuse      bool          // keep removed segments' files for new segments: !noReuse at Open
	preparing  atomic.Uint64 // the segment number the preparer is allocating, 0 when none; set under mu to 0
	rolling    bool          // a roll is under way; it may wait with mu released
	tight      atomic.Bool   // the file system ran out of room: allocate nothing ahead; set under mu
	lost       uint64        // records dropped to make room on a full file system
	retryAt    int64         // when a manifest that could not be written is tried again, ns

	highestNumber uint64   // highest segment number found in the directory at open
	leftovers     []string // files a crash left, removed once the manifest is written

	kick      chan struct{}    // capacity 1: a wake-up write is wanted
	prepare   chan uint64      // capacity 1: allocate a spare for this segment number
	retired   chan *hotSegment // mappings of sealed segments for the preparer to release
	doomed    chan string      // files of segments no longer listed, for the preparer to remove
	held      atomic.Int64     // mappings and files sent to the preparer and not yet freed
	awaitFree atomic.Bool      // freeHeld waits for held to reach 0; set under mu
	stop      chan struct{}
	done      chan struct{} // closed when both goroutines have stopped
}

// hotSegment is the segment being written.
type hotSegment struct {
	entry   segment.Entry
	num     uint64
	f       *os.File
	b       []byte // shared writable mapping of the whole file
	off     int    // offset of the next record
	count   uint64 // records in the segment
	created time.Time
	// The segment's index, if it has one. A record at or after indexAt completes an
	// index entry; indexAt is segment.NoEntryDue without an index.
	idx     *index
	ix      *segment.IndexWriter
	indexAt int
}

// indexed stores the index entries the record at off, just published, completes.
func (h *hotSegment) indexed(off int) {
	h.indexAt = h.ix.Published(off, h.count)
}

// Open opens the ring in dir, creating the directory and the ring if they do not exist,
// and recovers it if its last producer died. It starts one goroutine, which Close stops.
func Open(dir string, opts Options) (*Writer, error) { return openFS(dir, opts, nil) }

// openFS is Open with the file system seam: wrap, when not nil, wraps the real one.
func openFS(dir string, opts Options, wrap func(fileSystem) fileSystem) (*Writer, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := makeDir(dir, opts); err != nil {
		return nil, err
	}
	d, err := ringdir.Open(dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: d, opts: opts, kick: make(chan struct{}, 1), prepare: make(chan uint64, 1),
		retired: make(chan *hotSegment, 8), doomed: make(chan string, 64), stop: make(chan struct{}), done: make(chan struct{}),
		reuse: !noReuse}
	w.mu.init()
	w.cond.L = &w.mu
	if err := w.open(wrap); err != nil {
		w.release()
		return nil, err
	}
	w.start()
	return w, nil
}

func makeDir(dir string, opts Options) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("open ring %s: is a symbolic link; name the real directory", dir)
	case err == nil && !fi.IsDir():
		return fmt.Errorf("open ring %s: not a directory", dir)
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	// The directories missing on the way, outermost first: each gets the ring
	// directory's mode and group, so that the readers the group is for can reach it.
	var missing []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("create ring directory: %w", err)
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, opts.DirMode.Perm()); errors.Is(err, os.ErrExist) && i > 0 {
			continue // made by another process meanwhile: its mode and group are its own
		} else if err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create ring directory: %w", err)
		}
		if err := os.Chmod(p, opts.DirMode.Perm()); err != nil {
			return fmt.Errorf("create ring directory: %w", err)
		}
		if opts.GID > 0 {
			if err := os.Chown(p, -1, opts.GID); err != nil {
				return fmt.Errorf("create ring directory: %w", err)
			}
		}
	}
	return nil
}

// open takes the lock, recovers or creates the ring and starts a hot segment.
func (w *Writer) open(wrap func(fileSystem) fileSystem) error {
	if err := w.checkDir(); err != nil {
		return err
	}
	if err := w.checkFile(segment.LockName); err != nil {
		return err
	}
	if err := w.takeLock(); err != nil {
		return err
	}
	root, err := os.OpenRoot(w.dir.Path())
	if err != nil {
		return fmt.Errorf("open ring: %w", err)
	}
	w.root = root
	w.fs = osFS{dir: w.dir, root: root}
	if wrap != nil {
		w.fs = wrap(w.fs)
	}
	if err := w.recover(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.startSegment(); err != nil {
		return err
	}
	return w.sweep()
}

// takeLock takes the ring's OFD lock and writes the pid into the lock file.
func (w *Writer) takeLock() error {
	f, err := w.dir.OpenFile(segment.LockName, unix.O_RDWR|unix.O_CREAT, w.opts.FileMode)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return &LockedError{Dir: w.dir.Path(), PID: ringdir.ReadPID(f)}
		}
		return &os.PathError{Op: "lock", Path: f.Name(), Err: err}
	}
	w.chown(f)
	w.lock = f
	// The pid only informs: a full file system, which may have no page for it, does
	// not stop the producer.
	pid := fmt.Sprintf("%d\n", os.Getpid())
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(pid), 0)
	}
	if err != nil {
		w.opts.Logf("%s: write pid: %v", f.Name(), err)
	}
	return nil
}

func (w *Writer) chown(f *os.File) {
	if w.opts.GID > 0 {
		if err := f.Chown(-1, w.opts.GID); err != nil {
			w.opts.Logf("%s: set group: %v", f.Name(), err)
		}
	}
}

// Append appends one record and returns its sequence number. The record is visible to
// readers when Append returns. p is copied; the caller may reuse it. A payload larger
// than the ring's segments can hold fails with ErrTooLarge and changes nothing.
func (w *Writer) Append(p []byte) (uint64, error) {
	w.mu.Lock()
	// The common case: the record fits in the hot segment, and nothing else is due.
	if h := w.hot; h != nil && !w.closed && !w.rolling && !w.dirty && h.off+segment.RecordSpan(len(p)) <= len(h.b) {
		now := w.clock.now()
		seq := w.next
		off := h.off
		h.off = segment.PutRecord(h.b, off, seq, now, p)
		if off >= h.indexAt {
			h.indexed(off)
		}
		h.count++
		w.next++
		w.announce(now)
		w.mu.Unlock()
		return seq, nil
	}
	defer w.mu.Unlock()
	// A batch of one on the stack: appendLocked may wait with w.mu released, so a
	// buffer kept in w would be another Append's to overwrite.
	one := [1][]byte{p}
	first, _, err := w.appendLocked(one[:])
	return first, err
}

// AppendBatch appends the records ps, in order, all with the same timestamp, and
// returns the sequence number of the first and how many were appended. It costs less
// per record than Append: one lock, one clock read and at most one wake-up for the
// batch. The records are visible to readers when AppendBatch returns. When one of the
// payloads is too large, nothing is appended (ErrTooLarge). On any other error, the
// records before the failing one were appended: n says how many.
func (w *Writer) AppendBatch(ps [][]byte) (first uint64, n int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.appendLocked(ps)
}

func (w *Writer) appendLocked(ps [][]byte) (first uint64, n int, err error) {
	// A roll under way may be waiting with w.mu released. Nothing may be appended until
	// it is done: a batch's records must stay contiguous, and first must stay true.
	for w.rolling {
		w.cond.Wait()
	}
	if w.closed {
		return 0, 0, ErrClosed
	}
	limit := segment.MaxPayload(w.man.SegmentSize)
	for _, p := range ps {
		if len(p) > limit {
			return 0, 0, fmt.Errorf("%w: %d bytes, at most %d in segments of %d", ErrTooLarge,
				len(p), limit, w.man.SegmentSize)
		}
	}
	now := w.clock.now()
	if w.dirty && now >= w.retryAt {
		// A manifest that could not be written for want of room: the records go on
		// into the hot segment meanwhile, and readers see them once it is written.
		if err := w.writeManifest(); errors.Is(err, ErrNoSpace) {
			w.retryAt = now + int64(manifestRetry)
		} else if err != nil {
			return 0, 0, err
		}
	}
	first = w.next
	h := w.hot
	for _, p := range ps {
		for h.off+segment.RecordSpan(len(p)) > len(h.b) {
			if err := w.roll(); err != nil {
				w.announce(now)
				return first, n, err
			}
			h = w.hot
		}
		off := h.off
		h.off = segment.PutRecord(h.b, off, w.next, now, p)
		if off >= h.indexAt {
			h.indexed(off)
		}
		h.count++
		w.next++
		n++
	}
	w.announce(now)
	return first, n, nil
}

// announce arranges the wake-up write for records just appended at time now. Called
// with w.mu held.
func (w *Writer) announce(now int64) {
	quiet := now-w.lastAppend >= int64(wakeQuiet)
	w.lastAppend = now
	switch {
	case quiet && w.waking == nil:
		// The first records after a quiet spell: announce them at once, here, rather
		// than pay for waking the background goroutine first.
		w.wakeNow(w.hot)
	case !w.pending:
		w.pending = true
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// NextSeq returns the sequence number the next appended record will get.
func (w *Writer) NextSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// Lost returns how many records the writer dropped to make room for a new segment on a
// full file system since it was opened.
func (w *Writer) Lost() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// SegmentSize returns the ring's segment size.
func (w *Writer) SegmentSize() int64 { return w.man.SegmentSize }

// Dir returns the ring directory's path.
func (w *Writer) Dir() string { return w.dir.Path() }

// Close seals the hot segment, replaces the manifest, and releases the ring. A hot
// segment that holds no records stays listed, unsealed and empty: its number stays the
// highest the ring used, so the next producer never reuses it (docs/FORMAT.md). It
// stops the Writer's goroutines. Calling Close again returns ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done

	w.mu.Lock()
	defer w.mu.Unlock()
	for w.rolling {
		// An append's roll is waiting with w.mu released: let it finish first.
		w.cond.Wait()
	}
	err := w.finishHot()
	if err == nil || w.dirty {
		if merr := w.writeManifest(); err == nil {
			err = merr
		}
	}
	w.release()
	return err
}

// finishHot seals the hot segment, unless it is empty, and drops it from w.
func (w *Writer) finishHot() error {
	h := w.hot
	if h == nil {
		return nil
	}
	w.waitWake(h)
	i := len(w.man.Segments) - 1
	if h.count == 0 {
		w.unmapHot()
		return nil
	}
	segment.Seal(h.b, int64(h.off))
	w.man.Segments[i].Sealed = true
	w.man.Segments[i].LastSeq = w.next - 1
	w.dirty = true
	w.unmapHot()
	return nil
}

func (w *Writer) unmapHot() {
	if h := w.hot; h != nil {
		w.releaseHot(h)
		w.hot = nil
	}
}

// releaseHot unmaps and closes a segment that is no longer hot, and hands its index to
// the pool.
func (w *Writer) releaseHot(h *hotSegment) {
	ringdir.Unmap(h.b)
	h.f.Close()
	if h.idx != nil {
		w.sealedIndex(h.num, h.idx)
	}
}

// release closes everything Open opened. The goroutines must have stopped.
func (w *Writer) release() {
	w.unmapHot()
	if w.spare != nil {
		w.discard(w.spare)
		w.spare = nil
	}
	for {
		select {
		case h := <-w.retired:
			w.releaseHot(h)
			continue
		case name := <-w.doomed:
			w.remove(name)
			continue
		default:
		}
		break
	}
	w.dropKept()
	w.freeIndexes(true)
	if w.root != nil {
		w.root.Close()
	}
	if w.lock != nil {
		w.lock.Close()
	}
	w.dir.Close()
}

// roll seals the full hot segment and starts a new one. Called with w.mu held. A roll
// may wait on w.cond, which releases w.mu; meanwhile w.rolling holds appends back (see
// appendLocked). A roll asked for while another is under way (sealIfOld) waits for it
// to finish and returns nil; the caller looks at the new hot segment again.
func (w *Writer) roll() error {
	if w.rolling {
		for w.rolling {
			w.cond.Wait()
		}
		if w.closed || w.hot == nil {
			return ErrClosed
		}
		return nil
	}
	w.rolling = true
	defer func() {
		w.rolling = false
		w.cond.Broadcast()
	}()
	old := w.hot
	if old.count == 0 {
		return fmt.Errorf("%w: empty segment cannot hold the record", ErrTooLarge)
	}
	nh, err := w.createSegment(old.num+1, w.next)
	if err != nil {
		return err
	}
	// Creating the segment may have waited with w.mu released, and the background
	// goroutine may have started a wake-up write to old meanwhile: let it finish before
	// the seal, so that no write to old follows it.
	w.waitWake(old)
	segment.Seal(old.b, int64(old.off))
	i := len(w.man.Segments) - 1
	w.man.Segments[i].Sealed = true
	w.man.Segments[i].LastSeq = w.next - 1
	w.hot = nh
	w.retire(old)
	w.man.Segments = append(w.man.Segments, nh.entry)
	err = w.writeManifest()
	if errors.Is(err, ErrNoSpace) {
		// The new segment is there and has room: records go on into it, and readers
		// see them once a later append finds room for the manifest.
		w.retryAt = w.clock.now() + int64(manifestRetry)
		err = nil
	}
	w.wantSpare()
	return err
}

// startSegment creates the first hot segment after open. Called with w.mu held.
func (w *Writer) startSegment() error {
	var num uint64 = 1
	if n := len(w.man.Segments); n > 0 {
		num = w.man.Segments[n-1].Number() + 1
	}
	num = max(num, w.highestNumber+1)
	h, err := w.createSegment(num, w.next)
	if err != nil {
		return err
	}
	w.hot = h
	w.man.Segments = append(w.man.Segments, h.entry)
	err = w.writeManifest()
	w.wantSpare()
	return err
}

// createSegment makes segment num, with first sequence number first, ready to be
// written: it takes the spare the background goroutine prepared when there is one, and
// allocates it now otherwise. When the file system is full it drops the oldest sealed
// segments, one at a time, to make room. Called with w.mu held.
func (w *Writer) createSegment(num, first uint64) (*hotSegment, error) {
	if num > segment.MaxNumber {
		return nil, fmt.Errorf("publish: segment numbers exhausted at %d", num)
	}
	// The preparer may be allocating this very segment: waiting for it costs less
	// than allocating a second one, which it would then throw away.
	for w.preparing.Load() == num {
		w.cond.Wait()
	}
	if sp := w.spare; sp != nil {
		w.spare = nil
		if sp.num == num {
			h, err := w.install(sp, first)
			if err == nil {
				return h, nil
			}
			if err != errLeaseLost {
				w.opts.Logf("%v", err)
			}
		} else {
			w.discard(sp)
		}
	}
	// No spare: the preparer is behind. A removed segment's file it has not kept yet
	// makes this segment faster than a new file would; the mappings it has not
	// released yet go first, as in the preparer.
	for len(w.retired) > 0 {
		select {
		case h := <-w.retired:
			w.releaseHot(h)
			w.held.Add(-1)
		default:
		}
	}
	select {
	case name := <-w.doomed:
		w.retireFile(name)
		w.held.Add(-1)
	default:
	}
	for dropped := false; ; {
		sp, err := w.allocate(num, ".new")
		if err == nil {
			if !dropped && !sp.reused {
				// Room enough without dropping anything: allocate ahead again.
				w.tight.Store(false)
			}
			h, err := w.install(sp, first)
			if err == errLeaseLost {
				continue
			}
			return h, err
		}
		if !errors.Is(err, unix.ENOSPC) {
			return nil, err
		}
		// Room is short: stop allocating ahead, and give back what is held beyond the
		// ring itself before dropping records.
		w.tight.Store(true)
		if w.freeHeld() {
			continue
		}
		if !w.dropOldest() {
			return nil, fmt.Errorf("%w: %v", ErrNoSpace, err)
		}
		dropped = true
	}
}

// freeHeld releases space the writer holds beyond the ring: free index files, a spare segment, mappings of
// sealed segments not yet released (removed segments keep their pages while mapped), and
// waits for an allocation ahead of need that is under way. It reports whether it freed
// anything. Called with w.mu held.
func (w *Writer) freeHeld() bool {
	freed := w.freeIndexes(false)
	if w.spare != nil {
		w.discard(w.spare)
		w.spare = nil
		freed = true
	}
	for len(w.retired)+len(w.doomed) > 0 {
		select {
		case h := <-w.retired:
			w.releaseHot(h)
			w.held.Add(-1)
			freed = true
		case name := <-w.doomed:
			w.remove(name)
			w.held.Add(-1)
			freed = true
		default:
		}
	}
	if w.dropKept() {
		freed = true
	}
	// A mapping or a file the preparer took holds its pages until it is done with it.
	w.awaitFree.Store(true)
	for w.held.Load() > 0 {
		w.cond.Wait()
		freed = true
	}
	w.awaitFree.Store(false)
	for w.preparing.Load() != 0 {
		w.cond.Wait()
		freed = true
	}
	if w.spare != nil {
		w.discard(w.spare)
		w.spare = nil
	}
	return freed
}

// spare is a segment file allocated ahead of need: created under a temporary name,
// allocated in full and mapped with its pages faulted in, but without a header.
type spare struct {
	num uint64
	tmp string
	f   *os.File
	b   []byte
	idx *index // nil when the segment gets no index
	// A kept file (takeKept), leased: its pages are in place, and install checks the
	// lease before it writes the header.
	reused bool
}

// allocate creates, allocates and maps the file for segment num under a temporary name
// ending in suffix. It does not need w.mu.
func (w *Writer) allocate(num uint64, suffix string) (*spare, error) {
	if sp := w.takeKept(num); sp != nil {
		return sp, nil
	}
	name := segment.Name(num)
	// A random temporary name, created exclusively: nobody can have prepared it.
	var r [6]byte
	rand.Read(r[:])
	tmp := "." + name + suffix + "-" + hex.EncodeToString(r[:])
	f, err := w.fs.create(tmp, w.opts.FileMode)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	w.chown(f)
	size := w.man.SegmentSize
	fail := func(err error) (*spare, error) {
		f.Close()
		w.fs.remove(tmp)
		return nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	var b []byte
	if ringdir.Huge(size) {
		// Allocate one small page per huge page and map: the kernel then builds each
		// huge page from one small page and zeroes, instead of copying 512 of them.
		// The allocation below fills whatever it did not.
		if err := ringdir.SeedHuge(f, size); err != nil {
			return fail(err)
		}
		if b, err = ringdir.Map(f, size, true); err != nil {
			return fail(err)
		}
	}
	if err := w.fs.allocate(f, size); err != nil {
		ringdir.Unmap(b)
		return fail(err)
	}
	if b == nil {
		if b, err = ringdir.Map(f, size, true); err != nil {
			return fail(err)
		}
	}
	return &spare{num: num, tmp: tmp, f: f, b: b, idx: w.allocateIndex(num, tmp+segment.IndexSuffix)}, nil
}

// install writes the header of a spare and renames it into place.
func (w *Writer) install(sp *spare, first uint64) (*hotSegment, error) {
	name := segment.Name(sp.num)
	if sp.reused && !leaseHeld(sp.f) {
		// A reader tried to open the file since the lease was taken: it may hold
		// it once the lease goes, so the file must not change.
		w.discard(sp)
		return nil, errLeaseLost
	}
	now := time.Now()
	segment.PutHeader(sp.b, segment.Header{Size: w.man.SegmentSize, Number: sp.num, FirstSeq: first, Created: now.UnixNano()})
	// The first record's commit word: zero in a new file, an old record's in a kept one.
	clear(sp.b[segment.HeaderSize : segment.HeaderSize+8])
	if sp.idx != nil && !sp.idx.install(w, sp.num) {
		sp.idx = nil
	}
	if err := w.fs.rename(sp.tmp, name); err != nil {
		w.discard(sp)
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if sp.reused {
		unlease(sp.f)
	}
	h := &hotSegment{
		entry: segment.Entry{Name: name, FirstSeq: first},
		num:   sp.num, f: sp.f, b: sp.b, off: segment.HeaderSize, created: now,
		idx: sp.idx, indexAt: segment.NoEntryDue,
	}
	if h.idx != nil {
		h.ix, h.indexAt = h.idx.writer()
	}
	return h, nil
}

// discard removes a spare that will not be used.
func (w *Writer) discard(sp *spare) {
	ringdir.Unmap(sp.b)
	sp.f.Close()
	w.fs.remove(sp.tmp)
	if sp.idx != nil {
		sp.idx.discard(w)
	}
}

// dropOldest removes the oldest sealed segment to make room, and reports whether there
// was one. It replaces the manifest first when it can, so that readers see the segment
// retired rather than missing; when the manifest cannot be written either, the file goes
// first and the manifest that drops it follows once there is room. Called with w.mu held.
func (w *Writer) dropOldest() bool {
	e, ok := w.dropEntry()
	if !ok {
		return false
	}
	if err := w.replaceManifest(); err != nil {
		w.dirty = true
		if !errors.Is(err, unix.ENOSPC) {
			w.opts.Logf("%v", err)
		}
	}
	// Kept for reuse, the file makes the room the caller needs.
	w.retireFile(e.Name)
	return true
}

// dropEntry takes the oldest sealed segment out of the manifest in memory, counts its
// records as lost and reports it. Called with w.mu held.
func (w *Writer) dropEntry() (segment.Entry, bool) {
	if len(w.man.Segments) == 0 || !w.man.Segments[0].Sealed {
		return segment.Entry{}, false
	}
	e := w.man.Segments[0]
	w.man.Segments = w.man.Segments[1:]
	w.dirty = true
	n := e.LastSeq - e.FirstSeq + 1
	w.lost += n
	w.opts.Logf("%s: file system full: dropped segment %s, records %d to %d (%d lost)",
		w.dir.Path(), e.Name, e.FirstSeq, e.LastSeq, n)
	return e, true
}

// writeManifest trims the manifest to the retention limit, replaces the file and then
// removes the segments it no longer lists. When the file system has no room for the
// new manifest, it gives back what the writer holds beyond the ring and then drops the
// oldest sealed segments, one at a time, reporting each, until the manifest fits; it
// fails with ErrNoSpace only when nothing is left to drop, leaving w.dirty set so that a
// later call tries again. Called with w.mu held.
func (w *Writer) writeManifest() error {
	var drop []segment.Entry
	if over := len(w.man.Segments) - w.opts.Segments; over > 0 {
		drop = append(drop, w.man.Segments[:over]...)
		w.man.Segments = append([]segment.Entry(nil), w.man.Segments[over:]...)
	}
	for {
		err := w.replaceManifest()
		if err == nil {
			break
		}
		w.dirty = true
		if !errors.Is(err, unix.ENOSPC) {
			return err
		}
		w.tight.Store(true)
		if w.freeHeld() {
			continue
		}
		// The segments past the retention limit go first: they are dropped anyway.
		if len(drop) > 0 {
			for _, e := range drop {
				w.remove(e.Name)
			}
			drop = nil
			continue
		}
		e, ok := w.dropEntry()
		if !ok {
			return fmt.Errorf("%w: %v", ErrNoSpace, err)
		}
		// No room to say so first: remove the file, then list it no more. A reader
		// that finds a listed segment missing skips it, as it does a taken one.
		w.remove(e.Name)
	}
	if w.opts.GID > 0 {
		if err := w.root.Chown(segment.ManifestName, -1, w.opts.GID); err != nil {
			w.opts.Logf("%s: set group: %v", w.dir.Join(segment.ManifestName), err)
		}
	}
	for _, e := range drop {
		w.removeLater(e.Name)
	}
	return nil
}

// replaceManifest writes w.man as the new manifest, with the next generation. Called with
// w.mu held.
func (w *Writer) replaceManifest() error {
	w.man.Generation++
	w.man.SegmentsMax = w.opts.Segments
	if err := w.man.Validate(); err != nil {
		// The producer's own state is wrong: refuse to publish it.
		return fmt.Errorf("publish: internal error, manifest invalid: %w", err)
	}
	b := w.man.Encode()
	if len(b) > segment.MaxManifestSize {
		return fmt.Errorf("publish: internal error, manifest of %d bytes", len(b))
	}
	if err := w.fs.replace(segment.ManifestName, b, w.opts.FileMode.Perm()); err != nil {
		return fmt.Errorf("replace manifest %s: %w", w.dir.Join(segment.ManifestName), err)
	}
	w.dirty = false
	return nil
}
