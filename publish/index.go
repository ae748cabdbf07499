package publish

import (
	"os"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/segment"
)

// index is a segment's index file (docs/FORMAT.md, "The segment index"), from its
// allocation with the segment to the segment's seal. An index is optional: one that
// cannot be made is simply not there, and nothing is reported.
type index struct {
	name string // its temporary name until the segment is installed, then N.idx
	f    *os.File
	b    []byte // shared writable mapping of the whole file
	hdr  segment.IndexHeader
}

// allocateIndex creates, allocates and maps the index of segment num under the
// temporary name tmp, with its header written and no entry. It returns nil when segments
// of this ring get no index or the index cannot be made. It does not need w.mu.
func (w *Writer) allocateIndex(num uint64, tmp string) *index {
	h, ok := segment.NewIndexHeader(num, w.man.SegmentSize, segment.IndexBlock)
	if !ok || w.man.SegmentSize < segment.MinIndexedSize {
		return nil
	}
	f, err := w.fs.create(tmp, w.opts.FileMode)
	if err != nil {
		return nil
	}
	w.chown(f)
	if err := w.fs.allocate(f, h.FileSize()); err == nil {
		if b, err := ringdir.Map(f, h.FileSize(), true); err == nil {
			segment.PutIndexHeader(b, h)
			return &index{name: tmp, f: f, b: b, hdr: h}
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

// writer returns the writer of the index's entries and the offset of the first record
// that completes one.
func (ix *index) writer() (*segment.IndexWriter, int) { return segment.NewIndexWriter(ix.b, ix.hdr) }

// close unmaps and closes the index; its file stays.
func (ix *index) close() {
	ringdir.Unmap(ix.b)
	ix.f.Close()
}

// discard closes the index and removes its file.
func (ix *index) discard(w *Writer) {
	ix.close()
	w.fs.remove(ix.name)
}
