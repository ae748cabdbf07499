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
// otherwise. A Taker is not safe for concurrent use; run one per goroutine or process.
type Taker struct {
	r    *Ring
	wake *waker
}

// Taker returns a Taker for the ring.
func (r *Ring) Taker() *Taker { return &Taker{r: r} }

// Taken is a segment a Taker claimed. Read its records with Next, Record and Err, then
// call Done to delete it, or Close to give it up unfinished (it stays claimed and is
// delivered again by the next Take).
type Taken struct {
	seg       *openSegment
	sc        *segment.Scanner
	name      string
	r         *Ring
	Redeliver bool // the segment was claimed before by a taker that died
}

// Take claims the oldest sealed segment, or a claim a dead taker left behind, and
// returns it. It returns ErrNothingToTake when there is none.
func (t *Taker) Take() (*Taken, error) {
	names, err := t.r.dir.Names()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := segment.ParseName(name, segment.TakenSuffix); ok {
			tk, err := t.reclaim(name)
			if tk != nil || err != nil {
				return tk, err
			}
		}
	}
	for _, name := range names {
		if _, ok := segment.ParseName(name, segment.SegmentSuffix); !ok {
			continue
		}
		tk, sealed, err := t.claim(name)
		if tk != nil || err != nil {
			return tk, err
		}
		if !sealed {
			break // this is the hot segment: everything after it is newer
		}
	}
	return nil, ErrNothingToTake
}

// Wait blocks until something in the ring directory changes or the poll interval
// passes, so that a Take may find a newly sealed segment. It returns ctx.Err() when
// ctx is done.
func (t *Taker) Wait(ctx context.Context) error {
	if t.wake == nil {
		t.wake = newWaker(t.r.dir.Path())
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

// claim tries to take the segment file name. It returns nil without an error when the
// segment is not sealed (sealed false), or another taker has it.
func (t *Taker) claim(name string) (*Taken, bool, error) {
	f, err := t.r.dir.OpenFile(name, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	var w [8]byte
	if _, err := f.ReadAt(w[:], segment.OffSealed); err != nil || binary.LittleEndian.Uint64(w[:]) != 1 {
		f.Close()
		return nil, false, nil
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, true, nil
	}
	num, _ := segment.ParseName(name, segment.SegmentSuffix)
	taken := segment.TakenName(num)
	if err := t.r.dir.Rename(name, taken, true); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOENT) {
			return nil, true, nil // another taker, or the producer's retention, was first
		}
		return nil, true, fmt.Errorf("take %s: %w", t.r.dir.Join(name), err)
	}
	tk, err := t.taken(f, taken, num)
	return tk, true, err
}

// reclaim takes over a claim whose taker died: its lock is free.
func (t *Taker) reclaim(name string) (*Taken, error) {
	f, err := t.r.dir.OpenFile(name, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
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
	num, _ := segment.ParseName(name, segment.TakenSuffix)
	tk, err := t.taken(f, name, num)
	if tk != nil {
		tk.Redeliver = true
	}
	return tk, err
}

// taken maps a claimed segment. Its first sequence number comes from its own header:
// the manifest may no longer list it.
func (t *Taker) taken(f *os.File, name string, num uint64) (*Taken, error) {
	var hdr [segment.HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	h, err := segment.ParseHeader(hdr[:])
	if err != nil {
		f.Close()
		return nil, &segment.CorruptionError{Path: f.Name(), Err: err}
	}
	e := segment.Entry{Name: segment.Name(num), FirstSeq: h.FirstSeq, Sealed: true}
	s, err := t.r.mapSegment(f, e, h.Size)
	if err != nil {
		return nil, err
	}
	s.path = t.r.dir.Join(name)
	return &Taken{seg: s, sc: s.scanner(), name: name, r: t.r}, nil
}

// Number returns the segment's number.
func (tk *Taken) Number() uint64 { return tk.seg.num }

// Next advances to the segment's next record.
func (tk *Taken) Next() bool { return tk.sc.Next() }

// Record returns the current record. Its Data is valid until the next call to Next.
func (tk *Taken) Record() segment.Record { return tk.sc.Record() }

// Err returns the error that stopped Next, if any: a *segment.CorruptionError when the
// segment is damaged.
func (tk *Taken) Err() error { return tk.sc.Err() }

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
	name := segment.Name(tk.seg.num)[:segment.NameDigits] + segment.DamagedSuffix
	err := tk.r.dir.Rename(tk.name, name, true)
	tk.seg.close()
	return tk.r.dir.Join(name), err
}

// Close releases the segment without deleting it: it stays claimed, and the next Take
// delivers it again.
func (tk *Taken) Close() error {
	tk.seg.close()
	return nil
}
