package segment

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// FuzzScanner feeds arbitrary bytes as the record area and the sealed and committed words
// of a segment with a valid header. The scanner must never panic, and every record it
// returns must satisfy the format's rules.
func FuzzScanner(f *testing.F) {
	seg, _, off := build(f, 1, true, "one", "two", "", "three three three")
	f.Add(seg[OffSealed:off])
	f.Add(seg[OffSealed : off-3])
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := make([]byte, testSize)
		h := Header{Size: testSize, Number: 3, FirstSeq: 42}
		PutHeader(b, h)
		copy(b[OffSealed:], data)
		s := NewScanner("fuzz", b, h)
		want := h.FirstSeq
		for i := 0; s.Next(); i++ {
			r := s.Record()
			if r.Seq != want {
				t.Fatalf("record %d has sequence %d, want %d", i, r.Seq, want)
			}
			want++
			if s.Offset() > testSize || s.Offset()%Align != 0 {
				t.Fatalf("offset %d", s.Offset())
			}
		}
		// Every accepted record checks out against an independent decoding.
		off := HeaderSize
		for seq := h.FirstSeq; seq < want; seq++ {
			size := int(binary.LittleEndian.Uint32(b[off:]))
			if crc32.ChecksumIEEE(b[off+8:off+size]) != binary.LittleEndian.Uint32(b[off+4:]) {
				t.Fatalf("accepted record at %d fails its CRC", off)
			}
			off += RecordSpan(size - RecordHeaderSize)
		}
		Valid(b, h)
	})
}

// FuzzParseHeader checks that header parsing never panics and that whatever it accepts
// obeys the header rules.
func FuzzParseHeader(f *testing.F) {
	seg, _, _ := build(f, 1, true, "x")
	f.Add(seg[:HeaderSize])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			return
		}
		if !ValidSize(h.Size) || h.Number == 0 || h.Number > MaxNumber || h.FirstSeq == 0 {
			t.Fatalf("accepted header %+v", h)
		}
		if !bytes.Equal(data[:8], []byte(Magic)) {
			t.Fatal("accepted bad magic")
		}
	})
}

// FuzzDecodeManifest checks that manifest decoding never panics and that an accepted
// manifest survives an encode/decode round trip.
func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"segment_size":65536,"segments_max":4,"generation":3,"segments":[` +
		`{"name":"0000000000000002.seg","first_seq":1,"last_seq":10,"sealed":true},` +
		`{"name":"0000000000000003.seg","first_seq":11,"last_seq":0,"sealed":false}]}`))
	f.Add([]byte(`{"version":1,"segment_size":4096,"segments_max":2,"generation":0,"segments":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		m2, err := DecodeManifest(m.Encode())
		if err != nil {
			t.Fatalf("re-decoding an accepted manifest: %v", err)
		}
		if !bytes.Equal(m.Encode(), m2.Encode()) {
			t.Fatal("round trip changed the manifest")
		}
	})
}
