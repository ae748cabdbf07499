package publish

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// maxKept is how many files of removed segments a Writer keeps for new segments. One
// segment is removed per roll in a steady stream, so one is nearly always enough; a
// second covers a roll that removes two (a lowered retention).
const maxKept = 2

// keptFiles holds the files of removed segments, renamed to temporary names and open
// read-write, for new segments to take (docs/FORMAT.md, "Reusing a segment file"): a
// new segment then costs a rename, a header and two fcntl calls, where a new file costs
// the kernel zeroing its memory, on the other CPU or on the append path, and the writer
// the first touch of every page. It is safe for concurrent use.
type keptFiles struct {
	mu    sync.Mutex
	files []*os.File // each named by its path; the base name is its temporary name
}

// errLeaseLost is install's error for a kept file whose lease was broken while it waited:
// a reader tried to open it. The segment is then made anew, without a word.
var errLeaseLost = errors.New("lease on a kept segment file broken")

// retireFile removes the file of segment name, which the manifest no longer lists, and
// its index: it keeps the segment file for reuse when it can (renamed to a temporary
// name first, so that no reader opens it by its old name any more), and unlinks it
// otherwise. Files that are not segment files are simply removed.
func (w *Writer) retireFile(name string) {
	n, ok := segment.ParseName(name, segment.SegmentSuffix)
	if !ok || !w.reuse || !w.keep(name) {
		w.remove(name)
		return
	}
	if err := w.removeIndex(n); err != nil {
		w.opts.Logf("%v", err)
	}
}

// keep renames segment file name to a temporary name and adds it to the kept files. It
// reports false when the caller should remove name as usual: the pool is full, or the
// rename failed for another reason than the name being gone (a taker took it).
func (w *Writer) keep(name string) bool {
	w.kept.mu.Lock()
	full := len(w.kept.files) >= maxKept
	w.kept.mu.Unlock()
	if full {
		return false
	}
	var r [6]byte
	rand.Read(r[:])
	tmp := "." + name + ".free-" + hex.EncodeToString(r[:])
	if err := w.fs.rename(name, tmp); err != nil {
		// A name that is gone was taken: there is nothing to keep, or to remove.
		return errors.Is(err, unix.ENOENT)
	}
	f, err := w.dir.OpenFile(tmp, unix.O_RDWR, 0)
	if err != nil {
		w.fs.remove(tmp)
		return true
	}
	// Another name for the file (a taker's claim by link and unlink, cut short) would
	// see it change.
	var st unix.Stat_t
	ok := unix.Fstat(int(f.Fd()), &st) == nil && st.Size == w.man.SegmentSize && st.Nlink == 1
	w.kept.mu.Lock()
	if ok = ok && len(w.kept.files) < maxKept; ok {
		w.kept.files = append(w.kept.files, f)
	}
	w.kept.mu.Unlock()
	if !ok {
		f.Close()
		w.fs.remove(tmp)
	}
	return true
}

// takeKept makes a spare for segment num out of a kept file, leased and mapped, or
// returns nil when there is none or it cannot be reused (it is then removed). Only a
// writer's own goroutines call it; the lease they take is released by install, or with
// the file by discard.
func (w *Writer) takeKept(num uint64) *spare {
	for {
		w.kept.mu.Lock()
		n := len(w.kept.files)
		if n == 0 {
			w.kept.mu.Unlock()
			return nil
		}
		f := w.kept.files[n-1]
		w.kept.files = w.kept.files[:n-1]
		w.kept.mu.Unlock()
		tmp := filepath.Base(f.Name())
		// The lease is granted only when no other open file description of the file
		// exists: no reader holds it open or mapped. SIGURG, ignored by default (and
		// by the Go runtime, which uses it itself), tells of a reader that tries to
		// open the file meanwhile; install sees that through leaseHeld.
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETSIG, int(unix.SIGURG)); err == nil {
			if _, err = unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err == nil {
				if b, err := ringdir.MapWritten(f, w.man.SegmentSize); err == nil {
					return &spare{num: num, tmp: tmp, f: f, b: b, reused: true,
						idx: w.allocateIndex(num, tmp+segment.IndexSuffix)}
				}
			}
		}
		f.Close() // releases a lease taken
		w.fs.remove(tmp)
	}
}

// leaseHeld reports whether the write lease on f is still held: no other process has
// tried to open the file since it was taken.
func leaseHeld(f *os.File) bool {
	t, err := unix.FcntlInt(f.Fd(), unix.F_GETLEASE, 0)
	return err == nil && t == unix.F_WRLCK
}

// unlease releases the lease on a reused segment's file, once it is renamed into place.
func unlease(f *os.File) {
	unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
}

// dropKept removes every kept file and reports whether there was one: on a full file
// system they are room, and a stopping writer leaves none behind.
func (w *Writer) dropKept() bool {
	w.kept.mu.Lock()
	files := w.kept.files
	w.kept.files = nil
	w.kept.mu.Unlock()
	for _, f := range files {
		name := filepath.Base(f.Name())
		f.Close()
		if err := w.fs.remove(name); err != nil {
			w.opts.Logf("%v", err)
		}
	}
	return len(files) > 0
}

// noReuse turns reuse off for the writers opened after it is set: FILERING_NO_REUSE=1 in
// the environment, for benchmarks side by side with new files.
var noReuse = os.Getenv("FILERING_NO_REUSE") == "1"
