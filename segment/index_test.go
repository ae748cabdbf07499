package segment

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// TestIndexGolden pins the byte layout of an index (docs/FORMAT.md, "The segment
// index"), written out field by field from the document; the header CRC was computed
// with Python's zlib.crc32.
func TestIndexGolden(t *testing.T) {
	h, ok := NewIndexHeader(7, 16384, 4096)
	if !ok || h.Count != 3 || h.FileSize() != 64+3*8 {
		t.Fatalf("header %+v %v", h, ok)
	}
	b := make([]byte, h.FileSize())
	PutIndexHeader(b, h)
	w, due := NewIndexWriter(b, h)
	if due != 4096 {
		t.Fatalf("first entry due at %d, want 4096", due)
	}
	// A record at 4096 completes entry 1 only; one at 12296 (a record before it covered
	// 8192) completes entries 2 and 3.
	if due = w.Published(4096, 40); due != 8192 {
		t.Fatalf("next due %d, want 8192", due)
	}
	if due = w.Published(12296, 120); due != NoEntryDue {
		t.Fatalf("next due %d, want none", due)
	}
	want := unhex(t, `
		46494c4552494458      magic "FILERIDX"
		01000000              version 1
		0ab5492d              header CRC 0x2d49b50a of bytes 16..39
		0700000000000000      segment number 7
		0040000000000000      segment size 16384
		00100000              block size 4096
		03000000              3 entries
		000000000000000000000000000000000000000000000000   zero to 64
		0010000028000000      entry 1: offset 4096, index 40
		0830000078000000      entry 2: offset 12296, index 120
		0830000078000000      entry 3: the same record
	`)
	if !bytes.Equal(b, want) {
		t.Fatalf("index bytes differ from docs/FORMAT.md\n got %x\nwant %x", b, want)
	}
	if IndexName(7) != "0000000000000007.idx" {
		t.Fatalf("name %q", IndexName(7))
	}
	if e, ok := LoadIndexEntry(b, 2); !ok || e != (IndexEntry{Offset: 12296, Index: 120}) {
		t.Fatalf("entry 2: %+v %v", e, ok)
	}
	got, err := ParseIndexHeader(b, 7, 16384, int64(len(b)))
	if err != nil || got != h {
		t.Fatalf("parse: %+v %v", got, err)
	}
}

// TestParseIndexHeader checks that every field FORMAT.md lists is checked.
func TestParseIndexHeader(t *testing.T) {
	good := func() []byte {
		h, _ := NewIndexHeader(9, 1<<20, IndexBlock)
		b := make([]byte, h.FileSize())
		PutIndexHeader(b, h)
		return b
	}
	recrc := func(b []byte) {
		binary.LittleEndian.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:40]))
	}
	for _, tc := range []struct {
		name   string
		mutate func(b []byte) []byte
		number uint64
		size   int64
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, 9, 1 << 20},
		{"version", func(b []byte) []byte { b[8] = 2; return b }, 9, 1 << 20},
		{"crc", func(b []byte) []byte { b[12]++; return b }, 9, 1 << 20},
		{"number", func(b []byte) []byte { return b }, 8, 1 << 20},
		{"segment size", func(b []byte) []byte { return b }, 9, 2 << 20},
		{"block not a power of two", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[32:], 65535)
			recrc(b)
			return b
		}, 9, 1 << 20},
		{"block too small", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[32:], 2048)
			recrc(b)
			return b
		}, 9, 1 << 20},
		{"count", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[36:], 16)
			recrc(b)
			return b
		}, 9, 1 << 20},
		{"file short", func(b []byte) []byte { return b[:len(b)-8] }, 9, 1 << 20},
		{"file long", func(b []byte) []byte { return append(b, make([]byte, 8)...) }, 9, 1 << 20},
		{"header short", func(b []byte) []byte { return b[:63] }, 9, 1 << 20},
	} {
		b := tc.mutate(good())
		if _, err := ParseIndexHeader(b, tc.number, tc.size, int64(len(b))); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	b := good()
	if _, err := ParseIndexHeader(b, 9, 1<<20, int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// TestPlausibleEntry checks the bounds an entry must meet before its record is looked at.
func TestPlausibleEntry(t *testing.T) {
	for _, tc := range []struct {
		e    IndexEntry
		k    int
		want bool
	}{
		{IndexEntry{Offset: 65536, Index: 100}, 1, true},
		{IndexEntry{Offset: 65536, Index: (65536 - 64) / 24}, 1, true},
		{IndexEntry{Offset: 65536, Index: (65536-64)/24 + 1}, 1, false}, // more records than fit
		{IndexEntry{Offset: 65540, Index: 1}, 1, false},                 // not a multiple of 8
		{IndexEntry{Offset: 65528, Index: 1}, 1, false},                 // before its block
		{IndexEntry{Offset: 1 << 20, Index: 1}, 1, false},               // at the segment's end
		{IndexEntry{Offset: 131072, Index: 1}, 2, true},
	} {
		if got := PlausibleEntry(tc.e, tc.k, IndexBlock, 1<<20); got != tc.want {
			t.Errorf("entry %d %+v: %v, want %v", tc.k, tc.e, got, tc.want)
		}
	}
}

// FuzzParseIndexHeader: no input makes the header parser panic, and what it accepts
// describes a file of the size it was given.
func FuzzParseIndexHeader(f *testing.F) {
	h, _ := NewIndexHeader(3, 1<<20, IndexBlock)
	b := make([]byte, IndexHeaderSize)
	PutIndexHeader(b, h)
	f.Add(b, uint64(3), int64(1<<20), h.FileSize())
	f.Fuzz(func(t *testing.T, b []byte, number uint64, size, fileSize int64) {
		got, err := ParseIndexHeader(b, number, size, fileSize)
		if err == nil && (got.FileSize() != fileSize || got.Number != number || got.Count < 1) {
			t.Fatalf("accepted %+v for a file of %d bytes", got, fileSize)
		}
	})
}
