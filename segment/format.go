package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// Format constants. Every value here is part of the on-disk format (docs/FORMAT.md).
const (
	// Magic is the first 8 bytes of every segment file.
	Magic = "FILERSEG"
	// Version is the format version this package reads and writes.
	Version = 1
	// HeaderSize is the size of the segment header; records start here.
	HeaderSize = 64
	// RecordHeaderSize is the size of a record's fixed part: size, CRC, sequence, time.
	RecordHeaderSize = 24
	// Align is the alignment of every record.
	Align = 8

	// MinSegmentSize and MaxSegmentSize bound the segment size, which must also be a
	// multiple of PageSize.
	MinSegmentSize = 4 << 10
	MaxSegmentSize = 1 << 30
	// PageSize is the granularity of segment sizes.
	PageSize = 4096

	// MinSegments and MaxSegments bound how many segments a producer retains. At
	// MaxSegments entries, each with the longest names and numbers there can be, the
	// manifest stays below MaxManifestSize, so every manifest a producer writes is one
	// every reader accepts.
	MinSegments = 2
	MaxSegments = 8192
	// MaxSegmentsListed bounds the segments_max a reader accepts in a manifest: rings
	// written before MaxSegments was lowered may say up to this.
	MaxSegmentsListed = 65536

	// NameDigits is the number of decimal digits in a segment file name.
	NameDigits = 16
	// MaxNumber is the largest valid segment number.
	MaxNumber = 9999999999999999

	// Sealed-word values.
	hot    = 0
	sealed = 1
)

// Header field offsets.
const (
	offMagic     = 0
	offVersion   = 8
	offHeaderCRC = 12
	offSize      = 16
	offNumber    = 24
	offFirstSeq  = 32
	offCreated   = 40
	// OffSealed is the offset of the sealed word in a segment file.
	OffSealed = 48
	// OffCommitted is the offset of the committed word in a segment file.
	OffCommitted = 56
)

// Names of the files in a ring directory.
const (
	// ManifestName is the name of the manifest file.
	ManifestName = "manifest"
	// LockName is the name of the producer's lock file.
	LockName = "lock"
	// SegmentSuffix ends the name of a segment file.
	SegmentSuffix = ".seg"
	// TakenSuffix ends the name of a segment claimed by a taker.
	TakenSuffix = ".taken"
	// DamagedSuffix ends the name of a claimed segment a taker found damaged and set
	// aside.
	DamagedSuffix = ".damaged"
)

var crcTable = crc32.MakeTable(crc32.IEEE)

// Header is the fixed part of a segment header: the fields written once when the
// segment is created. The sealed and committed words change while the segment is hot
// and are read with Sealed and Committed.
type Header struct {
	Size     int64  // segment file size
	Number   uint64 // segment number, as in the file name
	FirstSeq uint64 // sequence number of the first record
	Created  int64  // creation time, ns since the Unix epoch
}

// ValidSize reports whether n is an allowed segment size.
func ValidSize(n int64) bool {
	return n >= MinSegmentSize && n <= MaxSegmentSize && n%PageSize == 0
}

// MaxPayload returns the largest payload that fits in a segment of the given size.
func MaxPayload(segmentSize int64) int {
	return int(segmentSize) - HeaderSize - RecordHeaderSize
}

// PutHeader writes h into the first HeaderSize bytes of b, with a zero sealed word and a
// committed word pointing just past the header. b must be at least HeaderSize long.
func PutHeader(b []byte, h Header) {
	copy(b[offMagic:], Magic)
	le := binary.LittleEndian
	le.PutUint32(b[offVersion:], Version)
	le.PutUint64(b[offSize:], uint64(h.Size))
	le.PutUint64(b[offNumber:], h.Number)
	le.PutUint64(b[offFirstSeq:], h.FirstSeq)
	le.PutUint64(b[offCreated:], uint64(h.Created))
	le.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[offSize:OffSealed], crcTable))
	le.PutUint64(b[OffSealed:], hot)
	le.PutUint64(b[OffCommitted:], HeaderSize)
}

// ParseHeader decodes and validates the fixed header fields at the start of b, a whole
// segment or at least its first HeaderSize bytes. It checks magic, version, header CRC
// and that the size is allowed; the caller checks size, number and first sequence
// against what it expected. Errors wrap ErrBadMagic, ErrVersion or ErrHeader.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrShort, len(b), HeaderSize)
	}
	if string(b[offMagic:offMagic+8]) != Magic {
		return Header{}, fmt.Errorf("%w: %q", ErrBadMagic, b[offMagic:offMagic+8])
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[offVersion:]); v != Version {
		return Header{}, fmt.Errorf("%w: version %d, this reader knows %d", ErrVersion, v, Version)
	}
	if got, want := crc32.Checksum(b[offSize:OffSealed], crcTable), le.Uint32(b[offHeaderCRC:]); got != want {
		return Header{}, fmt.Errorf("%w: header CRC %08x, stored %08x", ErrHeader, got, want)
	}
	h := Header{
		Size:     int64(le.Uint64(b[offSize:])),
		Number:   le.Uint64(b[offNumber:]),
		FirstSeq: le.Uint64(b[offFirstSeq:]),
		Created:  int64(le.Uint64(b[offCreated:])),
	}
	switch {
	case h.Size < 0 || !ValidSize(h.Size):
		return Header{}, fmt.Errorf("%w: segment size %d not allowed", ErrHeader, h.Size)
	case h.Number == 0 || h.Number > MaxNumber:
		return Header{}, fmt.Errorf("%w: segment number %d out of range", ErrHeader, h.Number)
	case h.FirstSeq == 0 || h.FirstSeq >= 1<<63:
		return Header{}, fmt.Errorf("%w: first sequence %d out of range", ErrHeader, h.FirstSeq)
	}
	return h, nil
}

// load64 atomically loads the little-endian word at b[off:off+8]. off must be a multiple
// of 8 and b must be 8-byte aligned; all callers guarantee both.
func load64(b []byte, off int) uint64 {
	p := (*uint64)(unsafe.Pointer(&b[off]))
	v := atomic.LoadUint64(p)
	if bigEndian {
		v = swap64(v)
	}
	return v
}

// store64 atomically stores v as a little-endian word at b[off:off+8].
func store64(b []byte, off int, v uint64) {
	_ = b[off+7]
	if bigEndian {
		v = swap64(v)
	}
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off])), v)
}

// publish64 stores the commit word v of the record at b[off:] with release ordering
// (storeRelease): the record's other bytes, stored before, are visible to a reader that
// sees it.
func publish64(b []byte, off int, v uint64) {
	_ = b[off+7]
	if bigEndian {
		v = swap64(v)
	}
	storeRelease((*uint64)(unsafe.Pointer(&b[off])), v)
}

var bigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()

func swap64(v uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return binary.LittleEndian.Uint64(b[:])
}

// aligned reports whether b starts at an 8-byte aligned address.
func aligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%8 == 0
}

// Sealed atomically loads the sealed word of the segment in b and reports whether the
// segment is sealed. Like every function here that loads or stores a word of a segment,
// it needs b to start at an 8-byte aligned address, as a mapping or a slice from make
// does; on 32-bit platforms a misaligned b panics. Values other than 0 and 1 are reported as an error wrapping
// ErrHeader.
func Sealed(b []byte) (bool, error) {
	switch v := load64(b, OffSealed); v {
	case hot:
		return false, nil
	case sealed:
		return true, nil
	default:
		return false, fmt.Errorf("%w: sealed word %#x", ErrHeader, v)
	}
}

// committed loads the committed word and checks it: at least HeaderSize, at most the
// segment size, and a multiple of 8.
func committed(b []byte) (int64, error) {
	v := load64(b, OffCommitted)
	if v < HeaderSize || v > uint64(len(b)) || v%Align != 0 {
		return 0, fmt.Errorf("%w: committed word %d outside %d..%d or not a multiple of 8", ErrHeader, v, HeaderSize, len(b))
	}
	return int64(v), nil
}

// SetCommitted atomically stores the committed word of the segment in b, which must be
// 8-byte aligned.
func SetCommitted(b []byte, end int64) { store64(b, OffCommitted, uint64(end)) }

// Seal stores end as the final committed word and then marks the segment sealed, in that
// order, so that a reader that sees it sealed also sees its final end. b must be 8-byte
// aligned.
func Seal(b []byte, end int64) {
	store64(b, OffCommitted, uint64(end))
	store64(b, OffSealed, sealed)
}

// RecordSpan returns the number of bytes a record with an n-byte payload occupies in a
// segment, padding included.
func RecordSpan(n int) int {
	return (RecordHeaderSize + n + Align - 1) &^ (Align - 1)
}

// PutRecord writes a record at offset off of the segment b and publishes it with one
// atomic store of its commit word, the last store it makes. Before that store it also
// zeroes the 8 bytes after the record, the next record's commit word, when they are in
// b: a reused segment file holds old records there (docs/FORMAT.md, "Appending"). It
// returns the offset of the next record. The caller guarantees that off is a multiple
// of 8, that the record fits (off+RecordSpan(len(payload)) <= len(b)), that the commit
// word at off is zero (a new segment's are; a writer that reuses a file zeroes the first
// one, and each PutRecord the next), and that b is 8-byte aligned. The other bytes the record covers may hold anything.
func PutRecord(b []byte, off int, seq uint64, t int64, payload []byte) int {
	end := off + RecordHeaderSize + len(payload)
	next := off + RecordSpan(len(payload))
	r := b[off:next:next]
	le := binary.LittleEndian
	// The padding: the last word of the record, which the payload then overwrites
	// where it reaches.
	le.PutUint64(r[len(r)-8:], 0)
	le.PutUint64(r[8:], seq)
	le.PutUint64(r[16:], uint64(t))
	copy(r[RecordHeaderSize:], payload)
	if next+8 <= len(b) {
		le.PutUint64(b[next:next+8], 0)
	}
	crc := recordCRC(b, off+8, end)
	publish64(b, off, uint64(end-off)|uint64(crc)<<32)
	return next
}

// Name returns the file name of segment number n.
func Name(n uint64) string {
	var buf [NameDigits + len(SegmentSuffix)]byte
	s := strconv.AppendUint(buf[:0], n, 10)
	out := make([]byte, 0, len(buf))
	for i := len(s); i < NameDigits; i++ {
		out = append(out, '0')
	}
	out = append(out, s...)
	return string(append(out, SegmentSuffix...))
}

// TakenName returns the name a taker gives segment number n when it claims it.
func TakenName(n uint64) string {
	s := Name(n)
	return s[:NameDigits] + TakenSuffix
}

// ParseName returns the segment number in a segment file name, and false when name is
// not exactly 16 decimal digits followed by suffix (SegmentSuffix or TakenSuffix) or the
// number is zero.
func ParseName(name, suffix string) (uint64, bool) {
	if len(name) != NameDigits+len(suffix) || name[NameDigits:] != suffix {
		return 0, false
	}
	var n uint64
	for i := 0; i < NameDigits; i++ {
		c := name[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, n != 0
}

// Committed atomically loads the committed word of the segment in b (8-byte aligned) and
// checks it: at least HeaderSize, at most the segment size, and a multiple of 8. Errors
// wrap ErrHeader.
func Committed(b []byte) (int64, error) { return committed(b) }
