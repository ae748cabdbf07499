package segment

import (
	"errors"
	"fmt"
)

// Errors reported for data read from disk. Each error this package returns wraps one of
// these; use errors.Is to tell them apart.
var (
	// ErrShort means a file is shorter than its format requires.
	ErrShort = errors.New("segment: file too short")
	// ErrBadMagic means a file does not start with Magic: it is not a segment.
	ErrBadMagic = errors.New("segment: bad magic")
	// ErrVersion means a segment or manifest has a format version this code does not know.
	ErrVersion = errors.New("segment: unsupported format version")
	// ErrHeader means a segment header fails its CRC or holds an impossible value, or
	// disagrees with the manifest or the file it is in.
	ErrHeader = errors.New("segment: bad segment header")
	// ErrRecordSize means a record's size word is impossible: smaller than a record
	// header or reaching past the end of the segment.
	ErrRecordSize = errors.New("segment: bad record size")
	// ErrChecksum means a record's CRC does not match its contents.
	ErrChecksum = errors.New("segment: record checksum mismatch")
	// ErrSequence means a record's sequence number is not the one expected.
	ErrSequence = errors.New("segment: record sequence out of order")
	// ErrMissing means a committed record is missing: a zero commit word below the
	// segment's committed word.
	ErrMissing = errors.New("segment: committed record missing")
	// ErrFault means reading a mapped segment faulted, because the file was truncated
	// under the mapping by something other than a filering producer.
	ErrFault = errors.New("segment: memory fault reading mapped segment")
	// ErrManifest means a manifest is malformed or breaks one of its rules.
	ErrManifest = errors.New("segment: bad manifest")
	// ErrID means a ring's identity file is malformed.
	ErrID = errors.New("segment: bad ring identity")
)

// CorruptionError reports damaged data at a known place in a segment file. It wraps the
// specific error (ErrChecksum, ErrRecordSize, ...); find it with errors.As to learn the
// position.
type CorruptionError struct {
	Path   string // the segment file, as the reader named it
	Offset int64  // byte offset of the damaged record or field
	Err    error  // what is wrong
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("%s: corrupt at offset %d: %v", e.Path, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }
