package publish

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// recover loads the ring's state, or starts a new ring. After a crash it seals the last
// segment at the end of its valid records (a torn record is not part of the ring) or
// removes it if it holds none, and removes files a crash left behind. It never changes
// a record. Called with the lock held, before the background goroutine starts.
func (w *Writer) recover() error {
	// One listing serves the checks, a new ring and the scan for leftovers: nothing
	// before the scan adds or removes a name.
	names, err := w.dir.Names()
	if err != nil {
		return err
	}
	if err := w.checkFiles(names); err != nil {
		return err
	}
	m, err := w.dir.ReadManifest()
	switch {
	case errors.Is(err, ringdir.ErrNoRing):
		return w.create(names)
	case err != nil:
		return fmt.Errorf("open ring: %w", err)
	}
	if err := w.ensureID(); err != nil {
		return err
	}
	if w.opts.SegmentSize != 0 && w.opts.SegmentSize != m.SegmentSize {
		return fmt.Errorf("%w: %s has segments of %d bytes, asked for %d", ErrMismatch,
			w.dir.Path(), m.SegmentSize, w.opts.SegmentSize)
	}
	w.man = *m
	w.next = m.NextSeq()
	w.retention(m)
	if hot, ok := m.Hot(); ok {
		if err := w.recoverHot(hot); err != nil {
			return err
		}
	}
	return w.scan(names)
}

// retention settles how many segments an existing ring keeps: what its manifest says
// unless the caller asked for another number, and never more than a producer may list.
// Lowering it drops the oldest segments beyond the new number, which the caller is told.
func (w *Writer) retention(m *segment.Manifest) {
	old := m.SegmentsMax
	switch {
	case w.opts.Segments == 0 && old > segment.MaxSegments:
		w.opts.Segments = segment.MaxSegments
		w.opts.Logf("%s: the ring retains %d segments, more than the %d a manifest can list; keeping %d",
			w.dir.Path(), old, segment.MaxSegments, segment.MaxSegments)
	case w.opts.Segments == 0:
		w.opts.Segments = old
		return
	case w.opts.Segments >= old:
		return
	default:
		w.opts.Logf("%s: retention lowered from %d to %d segments", w.dir.Path(), old, w.opts.Segments)
	}
	// The new hot segment will take one place.
	over := len(m.Segments) + 1 - w.opts.Segments
	if over <= 0 {
		return
	}
	first, last := m.Segments[0], m.Segments[min(over, len(m.Segments))-1]
	if last.Sealed {
		w.opts.Logf("%s: dropping the %d oldest segments (%s to %s), records %d to %d",
			w.dir.Path(), over, first.Name, last.Name, first.FirstSeq, last.LastSeq)
	} else {
		w.opts.Logf("%s: dropping the %d oldest segments (%s to %s), records from %d",
			w.dir.Path(), over, first.Name, last.Name, first.FirstSeq)
	}
}

// create starts a new ring: an empty manifest first, so that a segment file never
// exists without one. names lists the directory.
func (w *Writer) create(names []string) error {
	for _, n := range names {
		if _, ok := segment.ParseName(n, segment.SegmentSuffix); ok {
			return fmt.Errorf("open ring: %s holds segment %s but no manifest; remove the directory to start a new ring", w.dir.Path(), n)
		}
	}
	size := w.opts.SegmentSize
	if size == 0 {
		size = DefaultSegmentSize
	}
	if w.opts.Segments == 0 {
		w.opts.Segments = DefaultSegments
	}
	// A new ring gets a new identity, even where a removed ring left one.
	if err := w.fs.remove(segment.IDName); err != nil {
		return err
	}
	if err := w.ensureID(); err != nil {
		return err
	}
	w.man = segment.Manifest{Version: segment.Version, SegmentSize: size, SegmentsMax: w.opts.Segments, Segments: []segment.Entry{}}
	w.next = 1
	return w.writeManifest()
}

// recoverHot seals or removes the hot segment a dead producer left.
func (w *Writer) recoverHot(e segment.Entry) error {
	i := len(w.man.Segments) - 1
	// Whatever happens to this segment, its number is never used again: a follower may
	// still hold the old file open under it.
	w.highestNumber = max(w.highestNumber, e.Number())
	path := w.dir.Join(e.Name)
	f, err := w.dir.OpenFile(e.Name, unix.O_RDWR, 0)
	if errors.Is(err, unix.ENOENT) {
		return w.recoverMissingHot(e)
	}
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer f.Close()
	b, err := ringdir.Map(f, w.man.SegmentSize, true)
	if err != nil {
		return fmt.Errorf("recover %s: %w", path, err)
	}
	defer ringdir.Unmap(b)
	h, err := segment.ParseHeader(b)
	if err == nil && (h.Number != e.Number() || h.FirstSeq != e.FirstSeq || h.Size != w.man.SegmentSize) {
		err = fmt.Errorf("%w: header says segment %d, first sequence %d, size %d; manifest says %d, %d, %d",
			segment.ErrHeader, h.Number, h.FirstSeq, h.Size, e.Number(), e.FirstSeq, w.man.SegmentSize)
	}
	if err != nil {
		return fmt.Errorf("recover %s: %w", path, err)
	}
	end, n := segment.Valid(b, h)
	if n == 0 {
		// Dropped from the manifest; the file goes with the leftovers, once the new
		// manifest is written (were it removed first, a crash in between would leave a
		// manifest naming a hot segment that is gone).
		w.man.Segments = w.man.Segments[:i]
		w.next = e.FirstSeq
		return nil
	}
	segment.Seal(b, int64(end))
	w.man.Segments[i].Sealed = true
	w.man.Segments[i].LastSeq = e.FirstSeq + n - 1
	w.next = e.FirstSeq + n
	w.opts.Logf("%s: recovered %d records after an unclean stop; next sequence %d", path, n, w.next)
	return nil
}

// scan finds what a crash can leave in the directory: temporary files, which it removes,
// and segments (and indexes) created but never listed or dropped from the manifest but
// not yet removed, which sweep removes once the new manifest is written. scan also learns the highest
// segment number in use, claimed ones included, so that no number is reused. names
// lists the directory.
func (w *Writer) scan(names []string) error {
	listed := make(map[string]bool, len(w.man.Segments))
	for _, e := range w.man.Segments {
		listed[e.Name] = true
		w.highestNumber = max(w.highestNumber, e.Number())
	}
	for _, name := range names {
		if n, ok := segment.ParseName(name, segment.IndexSuffix); ok {
			// A crash between the index's rename and the segment's leaves an index
			// whose number no segment has: counting it keeps a new segment from
			// meeting it.
			w.highestNumber = max(w.highestNumber, n)
			if !listed[segment.Name(n)] {
				w.leftovers = append(w.leftovers, name)
			}
			continue
		}
		if n, ok := segment.ParseName(name, segment.TakenSuffix); ok {
			w.highestNumber = max(w.highestNumber, n)
			continue
		}
		if n, ok := segment.ParseName(name, segment.DamagedSuffix); ok {
			w.highestNumber = max(w.highestNumber, n)
			continue
		}
		n, ok := segment.ParseName(name, segment.SegmentSuffix)
		switch {
		case strings.HasPrefix(name, "."):
			// No manifest ever names a temporary file: remove it now, to free its room.
			if err := w.fs.remove(name); err != nil {
				return err
			}
		case ok && !listed[name]:
			w.highestNumber = max(w.highestNumber, n)
			w.leftovers = append(w.leftovers, name)
		}
	}
	return nil
}

// sweep removes the leftovers scan found. Called once the manifest no longer lists them.
func (w *Writer) sweep() error {
	for _, name := range w.leftovers {
		if err := w.fs.remove(name); err != nil {
			return err
		}
	}
	w.leftovers = nil
	return nil
}

// recoverMissingHot handles a hot segment whose file is gone. The producer seals a full
// segment before it replaces the manifest, so a taker may have claimed it in between;
// then its claimed file, or the header of the segment created after it, tells exactly
// where its records ended. Otherwise every sequence number it could have used is
// skipped, so that none is ever handed out twice.
func (w *Writer) recoverMissingHot(e segment.Entry) error {
	i := len(w.man.Segments) - 1
	num := e.Number()
	last, ok := w.claimedEnd(e, num)
	if !ok {
		last, ok = w.nextSegmentStart(e, num)
	}
	if ok && last >= e.FirstSeq {
		w.man.Segments[i].Sealed = true
		w.man.Segments[i].LastSeq = last
		w.next = last + 1
		return nil
	}
	w.man.Segments = w.man.Segments[:i]
	if ok {
		w.next = e.FirstSeq // it held no records
		return nil
	}
	w.next = e.FirstSeq + uint64(w.man.SegmentSize-segment.HeaderSize)/segment.RecordHeaderSize
	w.opts.Logf("%s: hot segment missing; continuing at sequence %d", w.dir.Join(e.Name), w.next)
	return nil
}

// claimedEnd returns the last sequence number in segment num if a taker holds it as
// N.taken or set it aside as N.damaged.
func (w *Writer) claimedEnd(e segment.Entry, num uint64) (uint64, bool) {
	base := segment.Name(num)[:segment.NameDigits]
	for _, name := range []string{base + segment.TakenSuffix, base + segment.DamagedSuffix} {
		f, err := w.dir.OpenFile(name, unix.O_RDONLY, 0)
		if err != nil {
			continue
		}
		b, err := ringdir.Map(f, w.man.SegmentSize, false)
		f.Close()
		if err != nil {
			continue
		}
		h, err := segment.ParseHeader(b)
		var n uint64
		if err == nil && h.Number == num && h.FirstSeq == e.FirstSeq && h.Size == w.man.SegmentSize {
			_, n = segment.Valid(b, h)
		}
		ringdir.Unmap(b)
		if err == nil && h.Number == num && h.FirstSeq == e.FirstSeq {
			return e.FirstSeq + n - 1, true
		}
	}
	return 0, false
}

// nextSegmentStart returns the sequence number before the first one of segment num+1,
// created (but not yet listed) before segment num was sealed.
func (w *Writer) nextSegmentStart(e segment.Entry, num uint64) (uint64, bool) {
	f, err := w.dir.OpenFile(segment.Name(num+1), unix.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var hdr [segment.HeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, false
	}
	h, err := segment.ParseHeader(hdr[:])
	if err != nil || h.Number != num+1 || h.FirstSeq < e.FirstSeq {
		return 0, false
	}
	return h.FirstSeq - 1, true
}
