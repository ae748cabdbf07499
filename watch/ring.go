// Package watch is the reader side of a filering ring: consistent snapshots of the
// retained records (Snapshot), followers that wait for new records (Follower), and
// takers that consume sealed segments exactly once (Taker). Readers need only read
// permission on the ring and never lock; takers also need to rename files in it.
//
// Records are read from shared read-only mappings of the segment files, with no system
// call per record. A reader copies each record it delivers out of the mapping before it
// checks the record's CRC, so what it returns is what it checked. The records it passes
// over on the way to a selection (before the last N, before a sequence number) are
// checked too, every one, since damage among them ends what a reader delivers of their
// segment; they are checked in place, and copied nowhere.
//
// # Damage
//
// Every reader here treats damage the same way (docs/FORMAT.md, "Damage: what a reader
// delivers"): damage costs at most the segment it is in, and is reported, never hidden.
//
//   - Segment-level damage (a listed file that is not a regular file or cannot be opened,
//     has the wrong size, a bad header, a header that disagrees with the manifest, an
//     impossible sealed or committed word, or is listed sealed while its sealed word is
//     0): no record of the segment is delivered. The error is a *segment.CorruptionError
//     naming the file and the offset of the bad field, or, for a file that cannot be
//     opened as a segment, an error whose message starts with the file's path and that
//     wraps the *os.PathError of the open.
//   - Record-level damage at an offset (a record that breaks the record rules below the
//     committed word, or, in a segment listed sealed, a record beyond the manifest's
//     last_seq or records that end before it): the records before it are delivered, the
//     rest of the segment is skipped. The error is a *segment.CorruptionError.
//
// Readers stop on such an error (Next returns false, Err returns it); SkipDamaged goes on
// with the next segment. A listed segment that is missing was taken or retired: snapshots
// skip it silently, followers report its records as lost.
//
// # Memory
//
// What a reader holds is bounded by what it reads, never by a size read from a file:
// segments are opened and checked through a 64-byte read of their header, mapped only when
// their records are read, and read through a ringdir.View, which keeps at most three
// windows (ringdir.ReadWindow) of a mapping resident.
package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// ErrNoRing means the directory holds no ring (no manifest).
var ErrNoRing = ringdir.ErrNoRing

// maxRetries bounds how often a reader starts over because the producer retired segments
// while it was opening them. Each retry needs a roll to happen within the time it takes
// to open the segments, so a handful always suffices; after that the reader keeps what it
// opened.
const maxRetries = 100

// Ring is a read-only handle on a ring directory. It is safe for concurrent use; the
// snapshots, followers and takers it returns are not.
type Ring struct {
	dir *ringdir.Dir
}

// Open opens the ring directory at path for reading. The directory must exist; it need
// not hold a ring yet (Snapshot and Stat then fail with ErrNoRing, Follow waits).
func Open(path string) (*Ring, error) {
	d, err := ringdir.Open(path)
	if err != nil {
		return nil, err
	}
	return &Ring{dir: d}, nil
}

// Close releases the ring. Snapshots, followers and takers obtained from it must be
// closed first.
func (r *Ring) Close() error { return r.dir.Close() }

// Path returns the ring directory's path.
func (r *Ring) Path() string { return r.dir.Path() }

// Manifest reads and validates the current manifest.
func (r *Ring) Manifest() (*segment.Manifest, error) { return r.dir.ReadManifest() }

// Selection chooses which retained records a Snapshot or Follower starts with. The zero
// value selects every retained record. From and Since filter; Last then keeps only the
// last N of what passes.
type Selection struct {
	Last  int       // when > 0, only the last Last records
	From  uint64    // when > 0, only records with sequence >= From
	Since time.Time // when not zero, only records appended at or after Since; the zero value filters nothing (records may have any time, negative ones included)
}

// Loss describes records a follower will never see: they were overwritten by the ring,
// taken by a taker, or skipped because they were damaged, before the follower reached
// them.
type Loss struct {
	From, To uint64 // inclusive range of lost sequence numbers
}

// Count returns how many records were lost.
func (l Loss) Count() uint64 { return l.To - l.From + 1 }

func (l Loss) String() string {
	return fmt.Sprintf("lost %d records (%d to %d)", l.Count(), l.From, l.To)
}

// openSegment is a listed segment file held open. It is mapped only when its records are
// read. damage is set when the segment has segment-level damage: then nothing of it is
// read, and f may be nil.
type openSegment struct {
	entry    segment.Entry // as listed, or made from its header for a taker
	num      uint64
	path     string
	f        *os.File
	dev, ino uint64
	size     int64
	hdr      segment.Header
	v        *ringdir.View // nil until mapped
	b        []byte        // v's bytes
	// committed is the committed word when the header was checked: the end of the
	// records of a segment sealed then.
	committed int64
	damage    error
	// pending is set for a listed segment beyond a read's first window, not opened yet
	// (Ring.openWindow opens it); gone for one found missing then.
	pending, gone bool
}

// maxOpen is how many segment files a read holds open at once, at most (docs/FORMAT.md,
// "Reading: a consistent snapshot", step 2): a manifest may list 8192 segments, more
// than a process may have files open. A read that needs more reads them in windows.
const maxOpen = 64

// pendingSegment returns the listed segment e, to be opened when its window is read.
func (r *Ring) pendingSegment(e segment.Entry, size int64) *openSegment {
	return &openSegment{entry: e, num: e.Number(), path: r.dir.Join(e.Name), size: size, pending: true}
}

// openWindow opens the segments of segs from i on that are pending, at most maxOpen
// of them: the next window of a read. A segment found missing is marked gone: it was
// taken, or retired while the windows before it were read (names are never reused, so
// the name opens the listed file or none). It fails only for a failure that is not the
// segments' (out of descriptors).
func (r *Ring) openWindow(segs []*openSegment, i int) error {
	for n := 0; i < len(segs) && n < maxOpen; i++ {
		s := segs[i]
		if s == nil || !s.pending {
			continue
		}
		o, err := r.open(s.entry, s.size)
		switch {
		case err == errMissing:
			s.pending, s.gone = false, true
		case err != nil:
			return err
		default:
			*s = *o
		}
		n++
	}
	return nil
}

// errMissing is what open returns for a listed segment whose file is gone.
var errMissing = errors.New("segment missing")

// open opens the segment e of a ring whose segments are size bytes and checks it against
// e, reading only its header. It returns errMissing when the file is gone, an error for a
// failure that is not the segment's (out of descriptors), and otherwise an openSegment,
// with damage set when the segment is damaged.
func (r *Ring) open(e segment.Entry, size int64) (*openSegment, error) {
	s := &openSegment{entry: e, num: e.Number(), path: r.dir.Join(e.Name), size: size}
	f, err := r.dir.OpenFile(e.Name, unix.O_RDONLY, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAGAIN):
		// EAGAIN: the producer holds a lease on the file to reuse it for a new
		// segment (docs/FORMAT.md, "Reusing a segment file"): this one was removed.
		return nil, errMissing
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM):
		return nil, err
	case err != nil:
		s.damage = &fileError{path: s.path, err: err}
		return s, nil
	}
	s.f = f
	if testHookOpened != nil {
		testHookOpened(s.path)
	}
	s.hdr, s.damage = s.check(&e)
	if s.damage != nil && r.renamed(e.Name, s) {
		// The producer removed the segment and reused its file after the name was
		// looked up: the header is another segment's.
		f.Close()
		return nil, errMissing
	}
	return s, nil
}

// testHookOpened, when set by a test, is called by open between opening a segment and
// checking it.
var testHookOpened func(path string)

// renamed reports whether name no longer names the file s holds open: it is gone, or
// names another file.
func (r *Ring) renamed(name string, s *openSegment) bool {
	var st unix.Stat_t
	err := unix.Fstatat(r.dir.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return true
	}
	return err == nil && s.ino != 0 && (st.Dev != s.dev || st.Ino != s.ino)
}

// fileError reports a listed segment that cannot be opened as a segment at all: it is
// not a regular file (a symbolic link, a FIFO, a directory) or cannot be opened. Its
// message names the file first, as every damage report does.
type fileError struct {
	path string
	err  error // from the open: an *os.PathError
}

func (e *fileError) Error() string {
	var pe *os.PathError
	if errors.As(e.err, &pe) {
		return e.path + ": " + pe.Err.Error()
	}
	return e.path + ": " + e.err.Error()
}

func (e *fileError) Unwrap() error { return e.err }

// check reads the header of the open file s.f, whose size must be s.size, and checks it:
// against e when e is not nil (the manifest's entry), and in any case against the segment
// number s.num. It records the file's identity. Errors are *segment.CorruptionError
// naming the offset of the bad field.
func (s *openSegment) check(e *segment.Entry) (segment.Header, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return segment.Header{}, &os.PathError{Op: "stat", Path: s.path, Err: err}
	}
	s.dev, s.ino = st.Dev, st.Ino
	if st.Size != s.size {
		kind := segment.ErrShort
		if st.Size > s.size {
			kind = segment.ErrHeader
		}
		return segment.Header{}, &segment.CorruptionError{Path: s.path, Offset: min(st.Size, s.size),
			Err: fmt.Errorf("%w: file is %d bytes, ring segments are %d", kind, st.Size, s.size)}
	}
	var hdr [segment.HeaderSize]byte
	if n, err := s.f.ReadAt(hdr[:], 0); n < len(hdr) {
		return segment.Header{}, &segment.CorruptionError{Path: s.path, Offset: int64(n),
			Err: fmt.Errorf("%w: header: %v", segment.ErrShort, err)}
	}
	s.committed = int64(binary.LittleEndian.Uint64(hdr[segment.OffCommitted:]))
	return checkHeader(s.path, hdr[:], s.size, s.num, e)
}

// checkHeader checks a segment header: its own rules, its size against size, its number
// against num, and, when e is not nil, its first sequence and sealed word against the
// manifest's entry. It also checks the sealed and committed words as they are now.
func checkHeader(path string, b []byte, size int64, num uint64, e *segment.Entry) (segment.Header, error) {
	h, err := segment.ParseHeader(b)
	if err != nil {
		return h, &segment.CorruptionError{Path: path, Offset: headerFieldOffset(b, err), Err: err}
	}
	bad := func(off int64, format string, args ...any) (segment.Header, error) {
		return h, &segment.CorruptionError{Path: path, Offset: off,
			Err: fmt.Errorf("%w: "+format, append([]any{segment.ErrHeader}, args...)...)}
	}
	le := binary.LittleEndian
	sealed, committed := le.Uint64(b[segment.OffSealed:]), le.Uint64(b[segment.OffCommitted:])
	switch {
	case h.Size != size:
		return bad(16, "header says segment size %d, ring segments are %d", h.Size, size)
	case h.Number != num:
		return bad(24, "header says segment %d, the name says %d", h.Number, num)
	case e != nil && h.FirstSeq != e.FirstSeq:
		return bad(32, "header says first sequence %d, the manifest says %d", h.FirstSeq, e.FirstSeq)
	case sealed > 1:
		return bad(segment.OffSealed, "sealed word %#x", sealed)
	case e != nil && e.Sealed && sealed == 0:
		return bad(segment.OffSealed, "the manifest lists it sealed, its sealed word is 0")
	case committed < segment.HeaderSize || committed > uint64(size) || committed%segment.Align != 0:
		return bad(segment.OffCommitted, "committed word %d outside %d..%d or not a multiple of 8", committed, segment.HeaderSize, size)
	}
	return h, nil
}

// headerFieldOffset returns the offset of the field of header b that ParseHeader's err
// is about.
func headerFieldOffset(b []byte, err error) int64 {
	le := binary.LittleEndian
	switch {
	case errors.Is(err, segment.ErrShort), errors.Is(err, segment.ErrBadMagic):
		return 0
	case errors.Is(err, segment.ErrVersion):
		return 8
	case crc32.ChecksumIEEE(b[16:segment.OffSealed]) != le.Uint32(b[12:]):
		return 12
	case !segment.ValidSize(int64(le.Uint64(b[16:]))):
		return 16
	}
	if n := le.Uint64(b[24:]); n == 0 || n > segment.MaxNumber {
		return 24
	}
	return 32
}

// mapped maps the segment, once. An error (the file shrank since it was checked) is a
// *segment.CorruptionError.
func (s *openSegment) mapped() error {
	if s.v != nil {
		return nil
	}
	if n, err := ringdir.FileSize(s.f); err != nil {
		return err
	} else if n < s.size {
		return &segment.CorruptionError{Path: s.path, Offset: n,
			Err: fmt.Errorf("%w: file is now %d bytes, ring segments are %d", segment.ErrShort, n, s.size)}
	}
	v, err := ringdir.MapView(s.f, s.size)
	if err != nil {
		return err
	}
	s.v, s.b = v, v.Bytes()
	return nil
}

// scanner returns a scanner over the mapped segment.
func (s *openSegment) scanner() *segment.Scanner { return segment.NewScanner(s.path, s.b, s.hdr) }

// sealedNow loads the sealed word of the mapped segment.
func (s *openSegment) sealedNow() bool {
	sealed, err := segment.Sealed(s.b)
	return err == nil && sealed
}

// is reports whether the file named name in d is the file s holds open.
func (s *openSegment) is(d *ringdir.Dir, name string) bool {
	var st unix.Stat_t
	if s.f == nil || unix.Fstatat(d.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return st.Dev == s.dev && st.Ino == s.ino
}

// release drops the pages of the segment's mapping from the page tables.
func (s *openSegment) release() {
	if s != nil && s.v != nil {
		s.v.Release()
	}
}

func (s *openSegment) close() {
	if s == nil {
		return
	}
	s.v.Close()
	s.v, s.b = nil, nil
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

func closeAll(segs []*openSegment) {
	for _, s := range segs {
		s.close()
	}
}

// stillListed reports whether the segments named missing, found missing while opening
// the segments manifest m lists, were taken, not retired: the manifest was not replaced
// since m, or still lists them all. It reads the manifest once more.
func (r *Ring) stillListed(m *segment.Manifest, missing []string) bool {
	now, err := r.dir.ReadManifest()
	if err != nil {
		return false
	}
	if now.Generation == m.Generation {
		return true
	}
	want := make(map[string]bool, len(missing))
	for _, n := range missing {
		want[n] = true
	}
	found := 0
	for _, e := range now.Segments {
		if want[e.Name] {
			found++
		}
	}
	return found == len(want)
}
