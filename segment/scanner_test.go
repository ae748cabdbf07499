package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

const testSize = 8192

// build returns a fresh segment holding records with the given payloads, starting at
// sequence first, and the offset after the last one. The committed word is left at the
// header unless commit is true.
func build(t testing.TB, first uint64, commit bool, payloads ...string) ([]byte, Header, int) {
	t.Helper()
	h := Header{Size: testSize, Number: 3, FirstSeq: first, Created: 1}
	b := make([]byte, testSize)
	PutHeader(b, h)
	off := HeaderSize
	for i, p := range payloads {
		off = PutRecord(b, off, first+uint64(i), int64(1000+i), []byte(p))
	}
	if commit {
		SetCommitted(b, int64(off))
	}
	return b, h, off
}

func scanAll(s *Scanner) []Record {
	var out []Record
	for s.Next() {
		r := s.Record()
		r.Data = bytes.Clone(r.Data)
		out = append(out, r)
	}
	return out
}

func TestScanner_RoundTrip(t *testing.T) {
	payloads := []string{"", "a", "1234567", "12345678", "123456789", string(make([]byte, 300))}
	b, h, _ := build(t, 10, true, payloads...)
	s := NewScanner("seg", b, h)
	got := scanAll(s)
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	if len(got) != len(payloads) {
		t.Fatalf("got %d records, want %d", len(got), len(payloads))
	}
	for i, r := range got {
		if r.Seq != 10+uint64(i) || r.Time != int64(1000+i) || string(r.Data) != payloads[i] {
			t.Errorf("record %d = %d %d %q", i, r.Seq, r.Time, r.Data)
		}
	}
	if s.Done() {
		t.Fatal("Done on a hot segment")
	}
}

func TestScanner_Live(t *testing.T) {
	b, h, off := build(t, 1, false, "one")
	s := NewScanner("seg", b, h)
	if n := len(scanAll(s)); n != 1 {
		t.Fatalf("first pass read %d records", n)
	}
	if s.Next() || s.Err() != nil {
		t.Fatal("Next past the end should be false with no error")
	}
	off = PutRecord(b, off, 2, 0, []byte("two"))
	off = PutRecord(b, off, 3, 0, []byte("three"))
	got := scanAll(s)
	if len(got) != 2 || string(got[1].Data) != "three" {
		t.Fatalf("second pass %v", got)
	}
	Seal(b, int64(off))
	if s.Next() || s.Err() != nil || !s.Done() {
		t.Fatalf("after seal: err %v done %v", s.Err(), s.Done())
	}
}

func TestScanner_FullSegment(t *testing.T) {
	h := Header{Size: MinSegmentSize, Number: 1, FirstSeq: 1}
	b := make([]byte, MinSegmentSize)
	PutHeader(b, h)
	off, n := HeaderSize, 0
	for off+RecordSpan(8) <= len(b) {
		off = PutRecord(b, off, uint64(n+1), 0, []byte("12345678"))
		n++
	}
	s := NewScanner("seg", b, h)
	if got := len(scanAll(s)); got != n || s.Err() != nil {
		t.Fatalf("read %d of %d, err %v", got, n, s.Err())
	}
	Seal(b, int64(off))
	if s.Next() || !s.Done() || s.Err() != nil {
		t.Fatalf("full sealed segment: done %v err %v", s.Done(), s.Err())
	}
}

func TestScanner_Corruption(t *testing.T) {
	second := HeaderSize + RecordSpan(3) // offset of the second record
	cases := []struct {
		name    string
		commit  bool
		damage  func(b []byte)
		want    error // nil: a clean stop after the first record
		records int
	}{
		{"payload bit flip below committed", true, func(b []byte) { b[second+24] ^= 1 }, ErrChecksum, 1},
		{"payload bit flip beyond committed is a torn tail", false, func(b []byte) { b[second+24] ^= 1 }, nil, 1},
		{"crc bit flip", true, func(b []byte) { b[second+5] ^= 0x80 }, ErrChecksum, 1},
		{"size larger than segment", true, func(b []byte) { binary.LittleEndian.PutUint32(b[second:], 1<<30) }, ErrRecordSize, 1},
		{"size smaller than a record header", true, func(b []byte) { binary.LittleEndian.PutUint32(b[second:], 3) }, ErrRecordSize, 1},
		{"zero commit word below committed", true, func(b []byte) { binary.LittleEndian.PutUint64(b[second:], 0) }, ErrMissing, 1},
		{"sequence going backwards", true, func(b []byte) { rewrite(b, second, 1) }, ErrSequence, 1},
		{"first record corrupt", true, func(b []byte) { b[HeaderSize+20] ^= 4 }, ErrChecksum, 0},
		{"committed word misaligned", false, func(b []byte) { binary.LittleEndian.PutUint64(b[OffCommitted:], 67) }, ErrHeader, 0},
		{"committed word beyond the segment", false, func(b []byte) { binary.LittleEndian.PutUint64(b[OffCommitted:], 1<<40) }, ErrHeader, 0},
		{"sealed word garbage", false, func(b []byte) { binary.LittleEndian.PutUint64(b[OffSealed:], 7) }, ErrHeader, 3},
		{"committed beyond sealed end", false, func(b []byte) {
			binary.LittleEndian.PutUint64(b[OffCommitted:], 4000)
			binary.LittleEndian.PutUint64(b[OffSealed:], 1)
		}, ErrMissing, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, h, _ := build(t, 1, c.commit, "one", "two", "three")
			c.damage(b)
			s := NewScanner("ring/0000000000000003.seg", b, h)
			got := scanAll(s)
			if len(got) != c.records {
				t.Errorf("read %d records before stopping, want %d", len(got), c.records)
			}
			err := s.Err()
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			var ce *CorruptionError
			if !errors.As(err, &ce) || ce.Path != "ring/0000000000000003.seg" {
				t.Fatalf("error %v is not a CorruptionError naming the file", err)
			}
		})
	}
}

// rewrite changes the sequence number of the record at off and fixes its CRC, so that
// only the sequence rule catches it.
func rewrite(b []byte, off int, seq uint64) {
	size := int(binary.LittleEndian.Uint32(b[off:]))
	binary.LittleEndian.PutUint64(b[off+8:], seq)
	binary.LittleEndian.PutUint32(b[off+4:], crc32.ChecksumIEEE(b[off+8:off+size]))
}

func TestParseHeader_Errors(t *testing.T) {
	cases := []struct {
		name   string
		damage func(b []byte)
		want   error
	}{
		{"bad magic", func(b []byte) { b[0] = 'X' }, ErrBadMagic},
		{"future version", func(b []byte) { b[8] = 2 }, ErrVersion},
		{"header bit flip", func(b []byte) { b[30] ^= 1 }, ErrHeader},
		{"short", nil, ErrShort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _, _ := build(t, 1, true)
			if c.damage == nil {
				b = b[:HeaderSize-1]
			} else {
				c.damage(b)
			}
			if _, err := ParseHeader(b); !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestValid(t *testing.T) {
	b, h, off := build(t, 5, false, "a", "b", "c")
	// A torn fourth record: commit word written, payload not.
	binary.LittleEndian.PutUint64(b[off:], uint64(RecordHeaderSize+4)|0xdeadbeef<<32)
	end, n := Valid(b, h)
	if end != off || n != 3 {
		t.Fatalf("Valid = %d, %d; want %d, 3", end, n, off)
	}
}

func TestName(t *testing.T) {
	for _, c := range []struct {
		name string
		n    uint64
		ok   bool
	}{
		{"0000000000000001.seg", 1, true},
		{"9999999999999999.seg", MaxNumber, true},
		{"0000000000000000.seg", 0, false},
		{"000000000000001.seg", 0, false},
		{"00000000000000001.seg", 0, false},
		{"000000000000000a.seg", 0, false},
		{"0000000000000001.segx", 0, false},
		{"../000000000001.seg", 0, false},
		{"/000000000000001.seg", 0, false},
	} {
		n, ok := ParseName(c.name, SegmentSuffix)
		if n != c.n || ok != c.ok {
			t.Errorf("ParseName(%q) = %d, %v", c.name, n, ok)
		}
		if ok && Name(n) != c.name {
			t.Errorf("Name(%d) = %q", n, Name(n))
		}
	}
}

func BenchmarkPutRecord(b *testing.B) {
	for _, n := range []int{64, 1024, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			seg := make([]byte, 1<<20)
			PutHeader(seg, Header{Size: 1 << 20, Number: 1, FirstSeq: 1})
			p := make([]byte, n)
			b.SetBytes(int64(n))
			off := HeaderSize
			for i := 0; i < b.N; i++ {
				if off+RecordSpan(n) > len(seg) {
					clear(seg[HeaderSize:])
					off = HeaderSize
				}
				off = PutRecord(seg, off, uint64(i+1), 0, p)
			}
		})
	}
}

func TestScanner_Skip(t *testing.T) {
	b, h, _ := build(t, 7, true, "one", "two", "three")
	b[HeaderSize+RecordSpan(3)+24] ^= 1 // damage the payload of "two"
	s := NewScanner("seg", b, h)
	var seqs []uint64
	for s.Skip() {
		seqs = append(seqs, s.Record().Seq)
	}
	if len(seqs) != 3 || seqs[2] != 9 || s.Err() != nil {
		t.Fatalf("Skip saw %v, %v: framing is intact, so all three pass", seqs, s.Err())
	}
	s = NewScanner("seg", b, h)
	s.Skip()
	if s.Next() || !errors.Is(s.Err(), ErrChecksum) {
		t.Fatalf("Next after Skip did not check the CRC: %v", s.Err())
	}
}

// passThenNext reads the segment in b with Pass runs of up to k records, no further than
// until bytes ahead and of records no larger than big, each followed by one Next, and
// returns the offsets of the records passed or read, in order, and the scanner.
func passThenNext(b []byte, h Header, k, ahead, big int) ([]int, *Scanner) {
	s := NewScanner("seg", b, h)
	var offs []int
	buf := make([]int, k)
	for {
		n := s.Pass(buf, s.Offset()+ahead, big)
		offs = append(offs, buf[:n]...)
		off := s.Offset()
		if !s.Next() {
			return offs, s
		}
		offs = append(offs, off)
	}
}

// nextOnly reads the segment in b with Next alone, as passThenNext does.
func nextOnly(b []byte, h Header) ([]int, *Scanner) {
	s := NewScanner("seg", b, h)
	var offs []int
	for off := s.Offset(); s.Next(); off = s.Offset() {
		offs = append(offs, off)
	}
	return offs, s
}

// samePass checks that Pass changes nothing Next decides: the same records, in the same
// places, and the same end (error, offset, done).
func samePass(t *testing.T, b []byte, h Header, k, ahead, big int) {
	t.Helper()
	want, ws := nextOnly(b, h)
	got, gs := passThenNext(b, h, k, ahead, big)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Pass(%d, +%d, %d) then Next: records at %v; Next alone: %v", k, ahead, big, got, want)
	}
	if fmt.Sprint(gs.Err()) != fmt.Sprint(ws.Err()) || gs.Offset() != ws.Offset() || gs.NextSeq() != ws.NextSeq() || gs.Done() != ws.Done() {
		t.Fatalf("Pass(%d, +%d, %d) then Next ends with %v at %d (next %d, done %v); Next alone with %v at %d (next %d, done %v)",
			k, ahead, big, gs.Err(), gs.Offset(), gs.NextSeq(), gs.Done(), ws.Err(), ws.Offset(), ws.NextSeq(), ws.Done())
	}
}

func TestScanner_Pass(t *testing.T) {
	second := HeaderSize + RecordSpan(3)
	damages := map[string]func(b []byte){
		"healthy":               func(b []byte) {},
		"checksum":              func(b []byte) { b[second+24] ^= 1 },
		"size":                  func(b []byte) { binary.LittleEndian.PutUint32(b[second:], 1<<30) },
		"missing":               func(b []byte) { binary.LittleEndian.PutUint64(b[second:], 0) },
		"sequence":              func(b []byte) { rewrite(b, second, 1) },
		"committed word":        func(b []byte) { binary.LittleEndian.PutUint64(b[OffCommitted:], 67) },
		"sealed, shorter":       func(b []byte) { Seal(b, int64(second)) },
		"sealed, longer":        func(b []byte) { Seal(b, 4000) },
		"sealed word garbage":   func(b []byte) { binary.LittleEndian.PutUint64(b[OffSealed:], 7) },
		"uncommitted, checksum": func(b []byte) { SetCommitted(b, int64(second)); b[second+24] ^= 1 },
	}
	for name, damage := range damages {
		for _, commit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/commit=%v", name, commit), func(t *testing.T) {
				b, h, _ := build(t, 1, commit, "one", "two", "three", string(make([]byte, 300)), "five")
				damage(b)
				for _, k := range []int{1, 2, 100} {
					for _, ahead := range []int{1, 48, 4096} {
						for _, big := range []int{RecordHeaderSize, 40, 1 << 20} {
							samePass(t, b, h, k, ahead, big)
						}
					}
				}
				in, cp := NewScanner("seg", b, h).Checked()
				if in != 0 || cp != 0 {
					t.Fatalf("a new scanner has checked %d, %d", in, cp)
				}
				_, s := passThenNext(b, h, 100, 1<<20, 1<<20)
				if in, _ := s.Checked(); in == 0 && len(scanAll(NewScanner("seg", b, h))) > 1 {
					t.Fatal("Pass checked nothing in place")
				}
			})
		}
	}
}

// FuzzScannerPass checks that Pass changes nothing that Next decides, on any record area.
func FuzzScannerPass(f *testing.F) {
	seg, _, off := build(f, 1, true, "one", "two", "", "three three three")
	f.Add(seg[OffSealed:off], uint8(2), uint16(64), uint16(40))
	f.Add(seg[OffSealed:off-3], uint8(1), uint16(8), uint16(24))
	f.Fuzz(func(t *testing.T, data []byte, k uint8, ahead, big uint16) {
		b := make([]byte, testSize)
		h := Header{Size: testSize, Number: 3, FirstSeq: 42}
		PutHeader(b, h)
		copy(b[OffSealed:], data)
		samePass(t, b, h, int(k)+1, int(ahead)+1, int(big))
	})
}
