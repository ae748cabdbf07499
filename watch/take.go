package watch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// ErrNothingToTake means no sealed segment is waiting to be taken.
var ErrNothingToTake = errors.New("watch: no sealed segment to take")

// Taker consumes sealed segments in single-consumer mode: each sealed segment is taken
// by exactly one of any number of competing takers, by renaming it to its claimed name
// (docs/FORMAT.md, "Taking"). A taker that dies after claiming a segment but before
// finishing it leaves the claim behind unlocked; the next Take by any taker delivers that
// segment again. So delivery is at least once across a taker crash and exactly once
// otherwise.
//
// Damage is handled as every reader here handles it (see the package documentation): a
// claimed segment with segment-level damage delivers no record, one with record-level
// damage delivers the records before it; Err reports the damage and SetAside moves the
// segment out of the way, as N.damaged. A file under a segment's name that cannot even be
// opened (a symbolic link, a FIFO) is set aside at once, by its name, and handed over as
// a Taken that delivers nothing.
//
// A Taker is not safe for concurrent use; run one per goroutine or process.
type Taker struct {
	r    *Ring
	wake *waker
	size int64 // the manifest's segment size, as Take last read it; 0 without one
}

// Taker returns a Taker for the ring.
func (r *Ring) Taker() *Taker { return &Taker{r: r} }

// Taken is a segment a Taker claimed. Read its records with Next, Record and Err, then
// call Done to delete it, SetAside if Err reports damage, or Close to give it up
// unfinished (it stays claimed and is delivered again by the next Take).
type Taken struct {
	seg       *openSegment
	c         *cursor
	err       error  // damage found in the segment, or while reading it
	name      string // its name now: N.taken, or N.damaged once set aside
	aside     bool   // already set aside
	r         *Ring
	Redeliver bool // the segment was claimed before by a taker that died
}

// Take claims the oldest sealed segment, or a claim a dead taker left behind, and
// returns it. It returns ErrNothingToTake when there is none. A segment found damaged is
// returned too (its Err reports the damage). Take reads the manifest, when there is one,
// to check what it lists about the segments it claims (as every reader does); it takes
// segments whether the manifest lists them or not.
func (t *Taker) Take() (*Taken, error) {
	names, err := t.r.dir.Names()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var listed []segment.Entry
	t.size = 0
	if m, err := t.r.dir.ReadManifest(); err == nil {
		listed, t.size = m.Segments, m.SegmentSize
	}
	for _, name := range names {
		if num, ok := segment.ParseName(name, segment.TakenSuffix); ok {
			tk, err := t.reclaim(name, num, lookup(listed, num))
			if tk != nil || err != nil {
				return tk, err
			}
		}
	}
	for _, name := range names {
		num, ok := segment.ParseName(name, segment.SegmentSuffix)
		if !ok {
			continue
		}
		tk, hot, err := t.claim(name, num, lookup(listed, num))
		if tk != nil || err != nil {
			return tk, err
		}
		if hot {
			break // the hot segment: everything after it is newer
		}
	}
	return nil, ErrNothingToTake
}

// lookup returns the entry for segment number num in es, sorted by number, or nil.
func lookup(es []segment.Entry, num uint64) *segment.Entry {
	i, ok := slices.BinarySearchFunc(es, num, func(e segment.Entry, n uint64) int {
		switch en := e.Number(); {
		case en < n:
			return -1
		case en > n:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &es[i]
}

// Wait blocks until something in the ring directory changes or the poll interval
// passes, so that a Take may find a newly sealed segment. It returns ctx.Err() when
// ctx is done.
func (t *Taker) Wait(ctx context.Context) error {
	if t.wake == nil {
		t.wake = newWaker(t.r.dir.Path(), false)
	}
	_, err := t.wake.wait(ctx)
	return err
}

// Close releases the Taker's watcher.
func (t *Taker) Close() error {
	if t.wake != nil {
		t.wake.close()
	}
	return nil
}

// claim tries to take the segment file name, number num, which the manifest lists as e
// (nil when it does not). It returns nil without an error when another taker has it, or
// when it is hot (hot true): a segment whose header is valid, whose sealed word is 0 and
// that the manifest does not list sealed.
func (t *Taker) claim(name string, num uint64, e *segment.Entry) (tk *Taken, hot bool, err error) {
	f, err := t.r.dir.OpenFile(name, unix.O_RDONLY, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, false, nil
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM):
		return nil, false, err
	case err != nil:
		return t.setAsideUnopened(name, num, err)
	}
	var hdr [segment.HeaderSize]byte
	if n, _ := f.ReadAt(hdr[:], 0); n == len(hdr) && (e == nil || !e.Sealed) {
		if _, perr := segment.ParseHeader(hdr[:]); perr == nil && binary.LittleEndian.Uint64(hdr[segment.OffSealed:]) == 0 {
			f.Close()
			return nil, true, nil
		}
	}
	// Sealed, or damaged: either way it is claimed, and a damaged one set aside.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, false, nil
	}
	taken := segment.TakenName(num)
	if err := t.r.dir.Rename(name, taken, true); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOENT) {
			return nil, false, nil // another taker, or the producer's retention, was first
		}
		return nil, false, fmt.Errorf("take %s: %w", t.r.dir.Join(name), err)
	}
	return t.taken(f, taken, num, e), false, nil
}

// setAsideUnopened sets aside a file under a segment's name that cannot be opened as a
// segment (not a regular file, or refused), by renaming it: nobody can lock it, and the
// rename itself is the claim.
func (t *Taker) setAsideUnopened(name string, num uint64, damage error) (*Taken, bool, error) {
	aside := segment.Name(num)[:segment.NameDigits] + segment.DamagedSuffix
	if err := t.r.dir.Rename(name, aside, true); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, false, nil // another taker set it aside
		}
		return nil, false, fmt.Errorf("%w; setting it aside failed: %v", &fileError{path: t.r.dir.Join(name), err: damage}, err)
	}
	damage = &fileError{path: t.r.dir.Join(name), err: damage}
	seg := &openSegment{num: num, path: t.r.dir.Join(name), damage: damage}
	return &Taken{seg: seg, err: damage, name: aside, aside: true, r: t.r}, false, nil
}

// reclaim takes over a claim whose taker died: its lock is free.
func (t *Taker) reclaim(name string, num uint64, e *segment.Entry) (*Taken, error) {
	f, err := t.r.dir.OpenFile(name, unix.O_RDONLY, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil
	case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM):
		return nil, err
	case err != nil:
		tk, _, err := t.setAsideUnopened(name, num, err)
		return tk, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, nil // its taker is alive
	}
	// The claim may have been finished and removed between our open and our lock.
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Fstatat(t.r.dir.Fd(), name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil ||
		a.Ino != b.Ino || a.Dev != b.Dev {
		f.Close()
		return nil, nil
	}
	tk := t.taken(f, name, num, e)
	tk.Redeliver = true
	return tk, nil
}

// taken checks a claimed segment, open and locked as f, number num, now named name,
// which the manifest lists as e (nil when it does not). Its size and first sequence come
// from its own header, checked against e when there is one. A damaged one is returned
// with its damage as Err.
func (t *Taker) taken(f *os.File, name string, num uint64, e *segment.Entry) *Taken {
	path := t.r.dir.Join(name)
	s := &openSegment{num: num, path: path, f: f}
	tk := &Taken{seg: s, name: name, r: t.r}
	var hdr [segment.HeaderSize]byte
	if n, err := s.f.ReadAt(hdr[:], 0); n < len(hdr) {
		s.damage = &segment.CorruptionError{Path: path, Offset: int64(n), Err: fmt.Errorf("%w: header: %v", segment.ErrShort, err)}
	} else if h, err := segment.ParseHeader(hdr[:]); err != nil {
		s.damage = &segment.CorruptionError{Path: path, Offset: headerFieldOffset(hdr[:], err), Err: err}
	} else {
		s.size = h.Size
		s.entry = segment.Entry{Name: segment.Name(num), FirstSeq: h.FirstSeq, Sealed: true}
		if e != nil && e.Sealed {
			s.entry, s.size = *e, t.size
		}
		s.hdr, s.damage = s.check(&s.entry)
	}
	tk.err = s.damage
	return tk
}

// Number returns the segment's number.
func (tk *Taken) Number() uint64 { return tk.seg.num }

// Next advances to the segment's next record. It returns false at the end of the
// segment and on damage (see Err).
func (tk *Taken) Next() bool {
	if tk.err != nil {
		return false
	}
	if tk.c == nil {
		if tk.c, tk.err = newCursor(tk.seg); tk.err != nil {
			return false
		}
	}
	if !tk.c.next(true) {
		tk.err = tk.c.Err()
		return false
	}
	return true
}

// Record returns the current record. Its Data is valid until the next call to Next.
func (tk *Taken) Record() segment.Record { return tk.c.Record() }

// Err returns the damage that stopped Next, if any: a *segment.CorruptionError naming
// the file and offset, or an error naming a file that could not be opened as a segment. The records before record-level damage were delivered; none of a segment with
// segment-level damage.
func (tk *Taken) Err() error { return tk.err }

// Done deletes the claimed segment and releases it. Call it once every record was
// delivered.
func (tk *Taken) Done() error {
	err := tk.r.dir.Remove(tk.name)
	tk.seg.close()
	return err
}

// SetAside renames a damaged claimed segment to N.damaged, where no taker looks, so
// that it does not block the segments after it, and keeps it for inspection. It
// returns the new path.
func (tk *Taken) SetAside() (string, error) {
	defer tk.seg.close()
	if tk.aside {
		return tk.r.dir.Join(tk.name), nil
	}
	name := segment.Name(tk.seg.num)[:segment.NameDigits] + segment.DamagedSuffix
	if err := tk.r.dir.Rename(tk.name, name, true); err != nil {
		return tk.r.dir.Join(tk.name), err
	}
	tk.name, tk.aside = name, true
	return tk.r.dir.Join(name), nil
}

// Close releases the segment without deleting it: it stays claimed, and the next Take
// delivers it again.
func (tk *Taken) Close() error {
	tk.seg.close()
	return nil
}
