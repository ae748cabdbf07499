// Package segment defines the on-disk format of a filering ring: the fixed-size segment
// files, the records inside them, the manifest that lists them, and the names they carry.
// The complete specification, with every byte, is docs/FORMAT.md; a golden test pins it.
//
// # Segments
//
// A segment is a file of a fixed size (a multiple of 4096, 4 KiB to 1 GiB), allocated in
// full when it is created. It starts with a 64-byte header and continues with records,
// each aligned to 8 bytes:
//
//	header  magic "FILERSEG" | version u32 | header CRC u32 | size u64 | number u64 |
//	        first seq u64 | created ns i64 | sealed word u64 | committed word u64
//	record  size u32 | CRC u32 | seq u64 | time ns i64 | payload | zero pad to 8
//
// The first 8 bytes of a record, size and CRC, form its commit word. A writer stores the
// commit word last with one atomic 8-byte store, so a reader that loads it atomically and
// sees it non-zero sees the whole record; a zero commit word means "no record here yet".
// The CRC (IEEE, as zlib computes it) covers sequence, time and payload.
//
// # Concurrency
//
// The functions in this package that read a segment take a byte slice that is usually a
// shared mapping of a file that another process is appending to. They load commit,
// sealed and committed words with atomic 8-byte loads, which requires the slice to start
// at an 8-byte aligned address (a mapping does; NewScanner copies a misaligned slice).
package segment
