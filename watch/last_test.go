package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// lastRing makes a ring of 4 segments of size bytes holding 64-byte records ("%064d" of
// the sequence number): 3 full segments and a hot one holding hot records. With seal,
// the producer is closed, which seals the hot segment.
func lastRing(t testing.TB, size int64, hot int, seal bool) (dir string, total uint64) {
	t.Helper()
	dir = ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: size, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	perSeg := (int(size) - segment.HeaderSize) / segment.RecordSpan(64)
	for i := 0; i < 3*perSeg+hot; i++ {
		if _, err := w.Append([]byte(fmt.Sprintf("%064d", w.NextSeq()))); err != nil {
			t.Fatal(err)
		}
	}
	total = w.NextSeq() - 1
	if seal {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Cleanup(func() { w.Close() })
	}
	return dir, total
}

// readLast reads the last n records of the ring at dir and returns their sequence
// numbers, the first error and the work the snapshot did.
func readLast(t testing.TB, dir string, n int) ([]uint64, error, readWork) {
	return readSel(t, dir, Selection{Last: n})
}

// readSel reads what sel selects of the ring at dir, as readLast does.
func readSel(t testing.TB, dir string, sel Selection) ([]uint64, error, readWork) {
	t.Helper()
	r := openRing(t, dir)
	s, err := r.Snapshot(sel)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var seqs []uint64
	var first error
	for {
		for s.Next() {
			rec := s.Record()
			if len(rec.Data) == 64 && string(rec.Data) != fmt.Sprintf("%064d", rec.Seq) {
				t.Fatalf("record %d carries %q", rec.Seq, rec.Data)
			}
			seqs = append(seqs, rec.Seq)
		}
		err := s.Err()
		if first == nil {
			first = err
		}
		if !s.SkipDamaged() {
			break
		}
	}
	return seqs, first, s.work
}

// TestSnapshot_LastCopiesWhatItDelivers checks the work of a Last selection: it copies
// exactly the records it delivers, and reads nothing of the segments before: whatever
// the segment size, the records copied are N. Segments of 256 KiB have no index: each
// record of the segments read is checked once in place (docs/FORMAT.md makes a reader
// stop at damage anywhere before them). Segments of 16 MiB have one: the records checked
// are those from the index entry before the first delivered, and for the hot segment
// those from its last entry, about two blocks beyond the N.
func TestSnapshot_LastCopiesWhatItDelivers(t *testing.T) {
	const n = 1000
	for _, size := range []int64{256 << 10, 16 << 20} {
		perSeg := (int(size) - segment.HeaderSize) / segment.RecordSpan(64)
		for _, c := range []struct {
			name string
			hot  int // records in the hot segment
			seal bool
			read int // records checked in place: those of the segments the last n span
		}{
			{"hot segment nearly full", perSeg - 10, false, perSeg - 10},
			{"hot segment nearly full, sealed", perSeg - 10, true, perSeg - 10},
			{"sealed segment and a nearly empty hot one", 100, false, perSeg + 100},
		} {
			t.Run(fmt.Sprintf("%dKiB/%s", size>>10, c.name), func(t *testing.T) {
				dir, total := lastRing(t, size, c.hot, c.seal)
				seqs, err, work := readLast(t, dir, n)
				if err != nil {
					t.Fatal(err)
				}
				if !equal(seqs, span(total-n+1, total)) {
					t.Fatalf("got %d records %v..., want %d..%d", len(seqs), seqs[:min(3, len(seqs))], total-n+1, total)
				}
				if work.copied != n {
					t.Errorf("copied %d records to deliver %d", work.copied, n)
				}
				perBlock := segment.IndexBlock / segment.RecordSpan(64)
				indexed := size >= segment.MinIndexedSize
				switch {
				case !indexed && work.inPlace != c.read:
					t.Errorf("checked %d records in place, want %d: each record of the segments read once", work.inPlace, c.read)
				case indexed && (work.inPlace < n || work.inPlace > n+2*perBlock+2):
					t.Errorf("checked %d records in place, want %d to %d: from the index entries on", work.inPlace, n, n+2*perBlock+2)
				}
				// The same records selected by sequence number: those before them in
				// their segment are checked in place, not copied.
				from := total - n + 1
				seqs, err, work = readSel(t, dir, Selection{From: from})
				if err != nil || !equal(seqs, span(from, total)) {
					t.Fatalf("--from %d: %d records, %v", from, len(seqs), err)
				}
				want := c.read - n
				if indexed {
					want = min(want, perBlock) // those from the entry to the first delivered
				}
				if work.copied != n || !indexed && work.inPlace != want || indexed && work.inPlace > want {
					t.Errorf("--from %d: copied %d records to deliver %d, checked %d in place, want %d",
						from, work.copied, n, work.inPlace, want)
				}
			})
		}
	}
}

// TestSnapshot_LastDamageInLargeSegment checks a Last selection against damage in a
// segment larger than the View's windows and than bigRecord, where the records are
// checked a window at a time and large records take another path: the records before
// the damage are the ones delivered, whatever lies after it, and the damage is reported
// at its offset.
func TestSnapshot_LastDamageInLargeSegment(t *testing.T) {
	const size = 16 << 20
	type rec struct {
		payload int // bytes
	}
	// Small records, one large one (above bigRecord) in the middle, small ones again.
	var recs []rec
	for off := segment.HeaderSize; off < 5<<20; off += segment.RecordSpan(40) {
		recs = append(recs, rec{40})
	}
	bigAt := len(recs)
	recs = append(recs, rec{bigRecord + 100})
	for i := 0; i < 1000; i++ {
		recs = append(recs, rec{40})
	}
	// offsets of the records
	offs := make([]int, len(recs)+1)
	offs[0] = segment.HeaderSize
	for i, r := range recs {
		offs[i+1] = offs[i] + segment.RecordSpan(r.payload)
	}
	build := func(damage func(b []byte)) string {
		b := make([]byte, size)
		segment.PutHeader(b, segment.Header{Size: size, Number: 1, FirstSeq: 1, Created: 1})
		for i, r := range recs {
			p := make([]byte, r.payload)
			copy(p, fmt.Sprint(i+1))
			segment.PutRecord(b, offs[i], uint64(i+1), 1, p)
		}
		segment.SetCommitted(b, int64(offs[len(recs)]))
		if damage != nil {
			damage(b)
		}
		dir := ringtest.Dir(t)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segment.Name(1)), b, 0o640); err != nil {
			t.Fatal(err)
		}
		ringtest.PutManifest(t, dir, &segment.Manifest{Version: segment.Version, SegmentSize: size, SegmentsMax: 4,
			Generation: 1, Segments: []segment.Entry{{Name: segment.Name(1), FirstSeq: 1}}})
		return dir
	}
	last := uint64(len(recs))
	window := 4 << 20 // a record just past the first window of the View
	inWindow2 := 0
	for i, o := range offs {
		if o >= window {
			inWindow2 = i
			break
		}
	}
	for _, c := range []struct {
		name   string
		damage func(b []byte)
		n      int
		want   []uint64
		at     int // offset of the damage reported; 0 for none
		kind   error
	}{
		{"healthy", nil, 5, span(last-4, last), 0, nil},
		{"healthy, across the large record", nil, 1002, span(last-1001, last), 0, nil},
		{"checksum in the second window", func(b []byte) { b[offs[inWindow2]+30] ^= 1 }, 3,
			span(uint64(inWindow2)-2, uint64(inWindow2)), offs[inWindow2], segment.ErrChecksum},
		{"checksum of the large record", func(b []byte) { b[offs[bigAt]+bigRecord] ^= 1 }, 3,
			span(uint64(bigAt)-2, uint64(bigAt)), offs[bigAt], segment.ErrChecksum},
		{"sequence after the large record", func(b []byte) {
			o := offs[bigAt+2]
			binary.LittleEndian.PutUint64(b[o+8:], 7)
			size := int(binary.LittleEndian.Uint32(b[o:]))
			binary.LittleEndian.PutUint32(b[o+4:], crc32.ChecksumIEEE(b[o+8:o+size]))
		}, 2, span(uint64(bigAt)+1, uint64(bigAt)+2), offs[bigAt+2], segment.ErrSequence},
		{"missing record below the committed word", func(b []byte) { clear(b[offs[last-3] : offs[last-3]+8]) }, 4,
			span(last-6, last-3), offs[last-3], segment.ErrMissing},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := build(c.damage)
			seqs, err, _ := readLast(t, dir, c.n)
			if !equal(seqs, c.want) {
				t.Fatalf("got %v, want %v", seqs, c.want)
			}
			var ce *segment.CorruptionError
			switch {
			case c.kind == nil && err != nil:
				t.Fatal(err)
			case c.kind == nil:
			case !errors.As(err, &ce) || !errors.Is(err, c.kind) || ce.Offset != int64(c.at) || filepath.Base(ce.Path) != segment.Name(1):
				t.Fatalf("error %v, want %v at offset %d of %s", err, c.kind, c.at, segment.Name(1))
			}
		})
	}
}

// BenchmarkSnapshotLast1000BySegmentSize reads the last 1000 of 64-byte records from a
// ring whose hot segment is 93% full, on 2 MiB and on 64 MiB segments. Through the
// segments' indexes the records read are about the same; without them (-noindex) the
// larger segment costs a check of every record in it.
//
//	go test ./watch -run '^$' -bench SnapshotLast1000
func BenchmarkSnapshotLast1000BySegmentSize(b *testing.B) {
	for _, c := range []struct {
		size  int64
		index bool
	}{{2 << 20, true}, {64 << 20, true}, {2 << 20, false}, {64 << 20, false}} {
		name := fmt.Sprintf("%dMiB", c.size>>20)
		if !c.index {
			name += "-noindex"
		}
		b.Run(name, func(b *testing.B) {
			size := c.size
			perSeg := (int(size) - segment.HeaderSize) / segment.RecordSpan(64)
			dir, _ := lastRing(b, size, perSeg*93/100, false)
			if !c.index {
				removeIndexes(b, dir)
			}
			r := openRing(b, dir)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := r.Snapshot(Selection{Last: 1000})
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for s.Next() {
					n++
				}
				if n != 1000 || s.Err() != nil {
					b.Fatalf("read %d records, %v", n, s.Err())
				}
				s.Close()
			}
		})
	}
}
