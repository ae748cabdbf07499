package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Index format constants (docs/FORMAT.md, "The segment index").
const (
	// IndexMagic is the first 8 bytes of every index file.
	IndexMagic = "FILERIDX"
	// IndexVersion is the index format version this package reads and writes.
	IndexVersion = 1
	// IndexSuffix ends the name of a segment's index.
	IndexSuffix = ".idx"
	// IndexHeaderSize is the size of an index header; entry 1 starts here.
	IndexHeaderSize = 64
	// MinIndexBlock and MaxIndexBlock bound an index's block size, a power of two.
	MinIndexBlock = 4 << 10
	MaxIndexBlock = 1 << 20
	// IndexBlock is the block size the producers here write.
	IndexBlock = 64 << 10
	// MinIndexedSize is the smallest segment size the producers here index.
	MinIndexedSize = 1 << 20
)

// Index header field offsets.
const (
	offIdxNumber = 16
	offIdxSize   = 24
	offIdxBlock  = 32
	offIdxCount  = 36
	offIdxEnd    = 40 // the header CRC covers offIdxNumber up to here
)

// IndexName returns the name of segment n's index.
func IndexName(n uint64) string { return fmt.Sprintf("%0*d%s", NameDigits, n, IndexSuffix) }

// IndexHeader is an index's header: the segment it belongs to and its layout.
type IndexHeader struct {
	Number uint64 // the segment's number
	Size   int64  // the segment's size
	Block  int    // B: entry k is about the first record at or after k*B
	Count  int    // K, the number of entries: (Size-1)/Block
}

// NewIndexHeader returns the header of an index with blocks of block bytes for segment
// number of the given size, or false when such a segment gets no index (it is smaller
// than two blocks, or block is not a valid block size).
func NewIndexHeader(number uint64, size int64, block int) (IndexHeader, bool) {
	h := IndexHeader{Number: number, Size: size, Block: block}
	if !validBlock(block) || !ValidSize(size) {
		return h, false
	}
	h.Count = int((size - 1) / int64(block))
	return h, h.Count >= 1
}

// FileSize is the size of the index file h describes.
func (h IndexHeader) FileSize() int64 { return IndexHeaderSize + 8*int64(h.Count) }

func validBlock(b int) bool { return b >= MinIndexBlock && b <= MaxIndexBlock && b&(b-1) == 0 }

// PutIndexHeader writes h into the first IndexHeaderSize bytes of b, and zeroes the rest
// of the header. The entries are left as they are (zero, in a fresh file).
func PutIndexHeader(b []byte, h IndexHeader) {
	clear(b[:IndexHeaderSize])
	copy(b, IndexMagic)
	le := binary.LittleEndian
	le.PutUint32(b[offVersion:], IndexVersion)
	le.PutUint64(b[offIdxNumber:], h.Number)
	le.PutUint64(b[offIdxSize:], uint64(h.Size))
	le.PutUint32(b[offIdxBlock:], uint32(h.Block))
	le.PutUint32(b[offIdxCount:], uint32(h.Count))
	le.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[offIdxNumber:offIdxEnd], crcTable))
}

// ParseIndexHeader decodes and checks the header at the start of b, the first bytes of
// the index file of segment number, whose size is size; fileSize is the index file's
// size. Every check FORMAT.md lists is made here; an index that fails one is not used.
func ParseIndexHeader(b []byte, number uint64, size, fileSize int64) (IndexHeader, error) {
	if len(b) < IndexHeaderSize {
		return IndexHeader{}, fmt.Errorf("index header: %d bytes", len(b))
	}
	if string(b[:8]) != IndexMagic {
		return IndexHeader{}, fmt.Errorf("index header: magic %q", b[:8])
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[offVersion:]); v != IndexVersion {
		return IndexHeader{}, fmt.Errorf("index header: version %d", v)
	}
	if got, want := le.Uint32(b[offHeaderCRC:]), crc32.Checksum(b[offIdxNumber:offIdxEnd], crcTable); got != want {
		return IndexHeader{}, fmt.Errorf("index header: CRC %#08x, want %#08x", got, want)
	}
	h := IndexHeader{
		Number: le.Uint64(b[offIdxNumber:]),
		Block:  int(le.Uint32(b[offIdxBlock:])),
		Count:  int(le.Uint32(b[offIdxCount:])),
	}
	if s := le.Uint64(b[offIdxSize:]); s != uint64(size) {
		return IndexHeader{}, fmt.Errorf("index header: segment size %d, want %d", s, size)
	}
	h.Size = size
	want, ok := NewIndexHeader(number, size, h.Block)
	switch {
	case h.Number != number:
		return IndexHeader{}, fmt.Errorf("index header: segment number %d, want %d", h.Number, number)
	case !ok:
		return IndexHeader{}, fmt.Errorf("index header: block size %d", h.Block)
	case h.Count != want.Count:
		return IndexHeader{}, fmt.Errorf("index header: %d entries, want %d", h.Count, want.Count)
	case fileSize != h.FileSize():
		return IndexHeader{}, fmt.Errorf("index: file of %d bytes, want %d", fileSize, h.FileSize())
	}
	return h, nil
}

// IndexEntry is one entry of an index: the first record at or after a block's start.
type IndexEntry struct {
	Offset int    // the record's offset in the segment
	Index  uint64 // its sequence number minus the segment's first
}

// word encodes e as the u64 an index stores.
func (e IndexEntry) word() uint64 { return uint64(e.Offset) | e.Index<<32 }

// LoadIndexEntry atomically loads entry k (1 <= k <= Count) of the index mapped at b,
// which must be 8-byte aligned and at least FileSize long; ok is false for an entry not
// written (zero).
func LoadIndexEntry(b []byte, k int) (e IndexEntry, ok bool) {
	return ParseIndexEntry(load64(b, IndexHeaderSize+8*(k-1)))
}

// ParseIndexEntry decodes the u64 w of an index entry; ok is false for an entry not
// written (zero).
func ParseIndexEntry(w uint64) (e IndexEntry, ok bool) {
	return IndexEntry{Offset: int(uint32(w)), Index: w >> 32}, w != 0
}

// IndexWriter stores the entries of one hot segment's index, mapped at b, as records are
// published. It is not safe for concurrent use; readers may load entries concurrently.
type IndexWriter struct {
	b     []byte
	block int
	k     int // the next entry to store
	count int
}

// NoEntryDue is what Published and NewIndexWriter return when no record completes an
// entry any more.
const NoEntryDue = int(^uint(0) >> 1)

// NewIndexWriter returns a writer of the entries of the index mapped at b (8-byte
// aligned, h.FileSize() bytes), none of which are stored yet, and the offset at or after
// which a record completes the first entry.
func NewIndexWriter(b []byte, h IndexHeader) (*IndexWriter, int) {
	return &IndexWriter{b: b, block: h.Block, k: 1, count: h.Count}, h.Block
}

// Published stores the entries the record at off, with the given index, completes:
// every entry k not yet stored with k*B <= off. Call it after the record's commit word
// is stored, for a record at or after the offset the last call (or NewIndexWriter)
// returned; it returns the next such offset, or NoEntryDue. A caller checks a record's
// offset against it, one comparison per record, and calls Published only then.
func (w *IndexWriter) Published(off int, index uint64) int {
	v := IndexEntry{Offset: off, Index: index}.word()
	for w.k <= w.count && w.k*w.block <= off {
		store64(w.b, IndexHeaderSize+8*(w.k-1), v)
		w.k++
	}
	if w.k > w.count {
		return NoEntryDue
	}
	return w.k * w.block
}

// PlausibleEntry reports whether entry k of an index with blocks of block bytes, for a
// segment of size bytes, could describe a record: its offset a multiple of 8, at least
// k*block and below size, and its index no more than the records that fit before the
// offset. The record at the offset is still to be checked.
func PlausibleEntry(e IndexEntry, k, block int, size int64) bool {
	return e.Offset%Align == 0 && e.Offset >= k*block && int64(e.Offset) < size &&
		e.Index <= uint64(e.Offset-HeaderSize)/RecordHeaderSize
}
