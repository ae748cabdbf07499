package publish

import (
	"crypto/rand"
	"encoding/hex"
	"sync"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// index is a segment's index file (docs/FORMAT.md, "The segment index"), from its
// allocation with the segment to the segment's seal. An index is optional: one that
// cannot be made is simply not there, and nothing is reported.
type index struct {
	name string // its temporary name until the segment is installed, then N.idx
	b    []byte // shared writable mapping of the whole file (the file itself is closed)
	hdr  segment.IndexHeader
}

// indexPool keeps the index files of the segments a writer made, mapped, from the
// segment's creation to its removal, and the files of removed segments' indexes for new
// segments to take: an index then costs a roll two renames, rather than a file made,
// allocated, mapped, unmapped and removed (about a tenth of the time of a 4 KiB append
// on 2 MiB segments). A reader that still holds a reused file open sees it change under
// it; its checks against its segment catch that (docs/FORMAT.md, "The segment index").
// It is safe for concurrent use.
type indexPool struct {
	mu     sync.Mutex
	sealed map[uint64]*index // by segment number: indexes of segments no longer hot
	free   []*index          // files of removed segments' indexes, under temporary names
}

// allocateIndex makes the index of segment num under the temporary name tmp, with its
// header written and no entry: a free file of the pool, or a new one created, allocated
// and mapped. It returns nil when segments of this ring get no index or the index cannot
// be made. It does not need w.mu.
func (w *Writer) allocateIndex(num uint64, tmp string) *index {
	h, ok := segment.NewIndexHeader(num, w.man.SegmentSize, segment.IndexBlock)
	if !ok || w.man.SegmentSize < segment.MinIndexedSize {
		return nil
	}
	if ix := w.idx.take(); ix != nil {
		if int64(len(ix.b)) == h.FileSize() {
			clear(ix.b[segment.IndexHeaderSize:])
			segment.PutIndexHeader(ix.b, h)
			ix.hdr = h
			return ix
		}
		ix.discard(w)
	}
	f, err := w.fs.create(tmp, w.opts.FileMode)
	if err != nil {
		return nil
	}
	w.chown(f)
	if err := w.fs.allocate(f, h.FileSize()); err == nil {
		if b, err := ringdir.Map(f, h.FileSize(), true); err == nil {
			segment.PutIndexHeader(b, h)
			f.Close() // the mapping holds the file; a writer may hold thousands
			return &index{name: tmp, b: b, hdr: h}
		}
	}
	f.Close()
	w.fs.remove(tmp)
	return nil
}

// install renames the index to its segment's index name, before the segment itself is
// renamed into place. It reports false, having removed the file, when the rename fails:
// the segment then goes on without an index.
func (ix *index) install(w *Writer, num uint64) bool {
	name := segment.IndexName(num)
	if err := w.fs.rename(ix.name, name); err != nil {
		ix.discard(w)
		return false
	}
	ix.name = name
	return true
}

// take returns a free index file, or nil.
func (p *indexPool) take() *index {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		ix := p.free[n-1]
		p.free = p.free[:n-1]
		return ix
	}
	return nil
}

// sealedIndex keeps the index of segment num, which is no longer hot, until the segment
// is removed.
func (w *Writer) sealedIndex(num uint64, ix *index) {
	w.idx.mu.Lock()
	defer w.idx.mu.Unlock()
	if w.idx.sealed == nil {
		w.idx.sealed = map[uint64]*index{}
	}
	w.idx.sealed[num] = ix
}

// removeIndex removes the index of segment num, whose file was just removed: the pool
// keeps its file for a new segment, renamed to a temporary name, when it holds it;
// otherwise (a segment of an earlier run) the file is removed.
func (w *Writer) removeIndex(num uint64) error {
	w.idx.mu.Lock()
	ix := w.idx.sealed[num]
	delete(w.idx.sealed, num)
	w.idx.mu.Unlock()
	if ix != nil {
		var r [6]byte
		rand.Read(r[:])
		tmp := ".idx-free-" + hex.EncodeToString(r[:])
		if err := w.fs.rename(ix.name, tmp); err == nil {
			ix.name = tmp
			w.idx.mu.Lock()
			w.idx.free = append(w.idx.free, ix)
			w.idx.mu.Unlock()
			return nil
		}
		ix.close()
	}
	return w.fs.remove(segment.IndexName(num))
}

// freeIndexes removes the free files of the pool, and with all, unmaps the indexes it
// keeps for sealed segments too (their files stay). It reports whether it freed a file.
func (w *Writer) freeIndexes(all bool) bool {
	w.idx.mu.Lock()
	free, sealed := w.idx.free, w.idx.sealed
	w.idx.free = nil
	if all {
		w.idx.sealed = nil
	}
	w.idx.mu.Unlock()
	for _, ix := range free {
		ix.discard(w)
	}
	if all {
		for _, ix := range sealed {
			ix.close()
		}
	}
	return len(free) > 0
}

// writer returns the writer of the index's entries and the offset of the first record
// that completes one.
func (ix *index) writer() (*segment.IndexWriter, int) { return segment.NewIndexWriter(ix.b, ix.hdr) }

// close unmaps the index; its file stays.
func (ix *index) close() {
	ringdir.Unmap(ix.b)
}

// discard closes the index and removes its file.
func (ix *index) discard(w *Writer) {
	ix.close()
	w.fs.remove(ix.name)
}
