package segment

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// TestGolden pins the byte layout of docs/FORMAT.md. The expected bytes are written out
// field by field from the document; the CRCs were computed with Python's zlib.crc32,
// independently of this package. If this test fails, the format changed: change
// docs/FORMAT.md and Version with it.
func TestGolden(t *testing.T) {
	const size = 4096
	b := make([]byte, size)
	PutHeader(b, Header{Size: size, Number: 7, FirstSeq: 100, Created: 1700000000123456789})
	off := PutRecord(b, HeaderSize, 100, 1700000000999999999, []byte("hello"))
	off = PutRecord(b, off, 101, 1700000001000000000, nil)
	SetCommitted(b, int64(off))

	want := unhex(t, `
		46494c4552534547                      magic "FILERSEG"
		01000000                              version 1
		88af228a                              header CRC 0x8a22af88 of bytes 16..47
		0010000000000000                      segment size 4096
		0700000000000000                      segment number 7
		6400000000000000                      first sequence 100
		15cd853dfe9c9717                      created 1700000000123456789
		0000000000000000                      sealed word: hot
		7800000000000000                      committed word 120
		1d000000                              record 1 size 29 = 24 + 5
		d6e4592a                              record 1 CRC 0x2a59e4d6
		6400000000000000                      sequence 100
		ffc9c471fe9c9717                      time 1700000000999999999
		68656c6c6f                            payload "hello"
		000000                                padding to 32 bytes
		18000000                              record 2 size 24, empty payload
		c6f766a6                              record 2 CRC 0xa666f7c6
		6500000000000000                      sequence 101
		00cac471fe9c9717                      time 1700000001000000000
	`)
	if !bytes.Equal(b[:len(want)], want) {
		t.Fatalf("segment bytes differ from docs/FORMAT.md\n got %x\nwant %x", b[:len(want)], want)
	}
	if !bytes.Equal(b[len(want):], make([]byte, size-len(want))) {
		t.Fatal("bytes after the last record are not zero")
	}
	if off != len(want) {
		t.Fatalf("next record offset %d, want %d", off, len(want))
	}

	Seal(b, int64(off))
	if got := hex.EncodeToString(b[OffSealed : OffSealed+8]); got != "0100000000000000" {
		t.Fatalf("sealed word %s, want 0100000000000000", got)
	}
	if Name(7) != "0000000000000007.seg" || TakenName(7) != "0000000000000007.taken" {
		t.Fatalf("names %q %q", Name(7), TakenName(7))
	}

	m := Manifest{Version: 1, SegmentSize: 1048576, SegmentsMax: 16, Generation: 42, Segments: []Entry{
		{Name: "0000000000000007.seg", FirstSeq: 6001, LastSeq: 7000, Sealed: true},
		{Name: "0000000000000008.seg", FirstSeq: 7001},
	}}
	const wantManifest = `{"version":1,"segment_size":1048576,"segments_max":16,"generation":42,"segments":[` +
		`{"name":"0000000000000007.seg","first_seq":6001,"last_seq":7000,"sealed":true},` +
		`{"name":"0000000000000008.seg","first_seq":7001,"last_seq":0,"sealed":false}]}` + "\n"
	if got := string(m.Encode()); got != wantManifest {
		t.Fatalf("manifest\n got %s\nwant %s", got, wantManifest)
	}

	// The identity file: 32 lowercase hexadecimal digits and a newline, 33 bytes.
	const id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	if got := string(EncodeID(id)); got != id+"\n" || len(got) != 33 || IDName != "id" {
		t.Fatalf("id file %s %q", IDName, got)
	}
}

// unhex decodes the first column of each line.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		b, err := hex.DecodeString(f[0])
		if err != nil {
			t.Fatalf("bad golden line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}
