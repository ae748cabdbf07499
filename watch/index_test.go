package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// removeIndexes removes every index of the ring at dir.
func removeIndexes(t testing.TB, dir string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"+segment.IndexSuffix))
	for _, name := range names {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// copyRing copies the regular files of the ring at dir to a new directory, leaving the
// indexes out unless index is set. The producer of a hot ring may still be removing
// segments it retired: those are left out too.
func copyRing(t testing.TB, dir string, index bool) string {
	t.Helper()
	out := ringtest.Dir(t)
	if err := os.MkdirAll(out, 0o750); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !index && strings.HasSuffix(e.Name(), segment.IndexSuffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a segment the producer retired meanwhile, and no longer lists
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// indexedRing makes a ring of 8 segments of 1 MiB (indexed) holding records of many
// sizes, some longer than an index block, whose newest segment holds at least 2500
// records, and returns its directory and the last sequence number. With seal the
// producer is closed; otherwise the directory is a copy made while the producer ran,
// whose newest segment is hot.
func indexedRing(t testing.TB, seal bool) (string, uint64) {
	t.Helper()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20, Segments: 8})
	if err != nil {
		t.Fatal(err)
	}
	appendN := func(n int, size func(i int) int) {
		for i := 0; i < n; i++ {
			p := []byte(fmt.Sprintf("%d:%s", w.NextSeq(), strings.Repeat("x", size(i))))
			if _, err := w.Append(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(40000, func(i int) int {
		switch {
		case i%5000 == 4999:
			return 150000
		case i%400 == 399:
			return 70000
		case i%10 == 3:
			return 5
		case i%10 == 7:
			return 1000
		}
		return 64
	})
	for {
		m := manifestAt(t, dir)
		if w.NextSeq()-m.Segments[len(m.Segments)-1].FirstSeq >= 2500 {
			break
		}
		appendN(100, func(int) int { return 64 })
	}
	last := w.NextSeq() - 1
	if seal {
		w.Close()
		return dir, last
	}
	// A copy made while the producer runs: its hot segment stays hot, and nothing
	// changes under the tests, which compare copies of it.
	defer w.Close()
	return copyRing(t, dir, true), last
}

// selections are the reads the index tests compare: the last N across block and
// segment boundaries, and from sequence numbers in every segment.
func selections(t testing.TB, dir string) []Selection {
	m := manifestAt(t, dir)
	sels := []Selection{{}}
	for _, n := range []int{1, 2, 100, 745, 746, 1000, 3000, 10000, 30000} {
		sels = append(sels, Selection{Last: n})
	}
	for _, e := range m.Segments {
		for _, d := range []uint64{0, 1, 700, 2000, 9000} {
			sels = append(sels, Selection{From: e.FirstSeq + d})
		}
	}
	return sels
}

func manifestAt(t testing.TB, dir string) *segment.Manifest {
	t.Helper()
	m, err := openRing(t, dir).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSnapshot_IndexSameRecords: through the indexes, every Last and From selection of
// healthy rings, hot and sealed, delivers exactly what it delivers without them, and
// Stat counts the same.
func TestSnapshot_IndexSameRecords(t *testing.T) {
	for _, seal := range []bool{false, true} {
		dir, last := indexedRing(t, seal)
		plain := copyRing(t, dir, false)
		indexed := copyRing(t, dir, true)
		// Stat counts the hot segment from its last entry.
		want, err := openRing(t, plain).Stat()
		if err != nil {
			t.Fatal(err)
		}
		got, err := openRing(t, indexed).Stat()
		if err != nil || got.Records != want.Records || got.LastSeq != last || len(got.Damage) != 0 {
			t.Fatalf("stat %+v, %v; without the index %+v", got, err, want)
		}
		for _, sel := range selections(t, dir) {
			want, err, _ := readSel(t, plain, sel)
			if err != nil {
				t.Fatal(err)
			}
			got, err, _ := readSel(t, indexed, sel)
			if err != nil || !equal(got, want) {
				t.Fatalf("sealed %v, %+v: %d records (%v), want %d", seal, sel, len(got), err, len(want))
			}
			if sel.Last > 0 && sel.Last <= 10000 && (len(got) != sel.Last || got[len(got)-1] != last) {
				t.Fatalf("%+v: %d records ending at %d", sel, len(got), got[len(got)-1])
			}
		}
	}
}

// corruptCRC flips a bit in the CRC of the record with sequence seq in the ring at dir.
func corruptCRC(t *testing.T, dir string, seq uint64) (name string, off int) {
	t.Helper()
	m := manifestAt(t, dir)
	for _, e := range m.Segments {
		if e.FirstSeq > seq || e.Sealed && e.LastSeq < seq {
			continue
		}
		path := filepath.Join(dir, e.Name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off = segment.HeaderSize
		for s := e.FirstSeq; s < seq; s++ {
			off += segment.RecordSpan(int(binary.LittleEndian.Uint32(b[off:])) - segment.RecordHeaderSize)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{b[off+4] ^ 1}, int64(off+4)); err != nil {
			t.Fatal(err)
		}
		return e.Name, off
	}
	t.Fatalf("no segment holds %d", seq)
	return "", 0
}

// TestSnapshot_IndexDamage: damage before the entry a read starts at is not read, and
// the records after it are delivered; damage after the entry gives exactly what a read
// without the index gives, and is reported at its offset. A whole read reports both.
func TestSnapshot_IndexDamage(t *testing.T) {
	for _, seal := range []bool{false, true} {
		ring, last := indexedRing(t, seal)
		dir := copyRing(t, ring, true)
		m := manifestAt(t, dir)
		hot := m.Segments[len(m.Segments)-1]
		// Damage early in the newest segment: before every entry a Last 100 uses.
		early := hot.FirstSeq + 3
		name, off := corruptCRC(t, dir, early)
		got, err, work := readSel(t, dir, Selection{Last: 100})
		if err != nil || !equal(got, span(last-99, last)) {
			t.Fatalf("sealed %v: last 100 past damage at %d: %d records, %v", seal, early, len(got), err)
		}
		if work.inPlace > 3000 {
			t.Errorf("last 100 checked %d records", work.inPlace)
		}
		got, err, _ = readSel(t, dir, Selection{From: last - 10})
		if err != nil || !equal(got, span(last-10, last)) {
			t.Fatalf("from %d past damage: %v, %v", last-10, got, err)
		}
		var ce *segment.CorruptionError
		_, err, _ = readSel(t, dir, Selection{})
		if !errors.As(err, &ce) || filepath.Base(ce.Path) != name || ce.Offset != int64(off) {
			t.Fatalf("whole read: %v, want damage at %s:%d", err, name, off)
		}
		// Damage late in the newest segment: after the entry a Last 5000 uses, so the
		// read is the one without the index, and reports it.
		dir = copyRing(t, ring, true)
		late := last - 50
		corruptCRC(t, dir, late)
		plain := copyRing(t, dir, false)
		for _, sel := range []Selection{{Last: 5000}, {Last: 20}, {From: late - 100}, {From: hot.FirstSeq + 1}} {
			want, werr, _ := readSel(t, plain, sel)
			got, err, _ := readSel(t, dir, sel)
			if !equal(got, want) || damageAt(err) != damageAt(werr) {
				t.Fatalf("sealed %v, %+v: %d records, %v; without the index %d records, %v", seal, sel, len(got), err, len(want), werr)
			}
		}
	}
}

// TestSnapshot_HostileIndex: an index that fails any check changes nothing a read
// delivers, and nothing is reported.
func TestSnapshot_HostileIndex(t *testing.T) {
	dir, _ := indexedRing(t, false)
	m := manifestAt(t, dir)
	hot := m.Segments[len(m.Segments)-1]
	idx := segment.IndexName(hot.Number())
	plain := copyRing(t, dir, false)
	good, err := os.ReadFile(filepath.Join(dir, idx))
	if err != nil {
		t.Fatal(err)
	}
	entry := func(b []byte, k int, off int, index uint64) []byte {
		binary.LittleEndian.PutUint64(b[segment.IndexHeaderSize+8*(k-1):], uint64(off)|index<<32)
		return b
	}
	lastK := 0
	for k := 1; k <= (len(good)-segment.IndexHeaderSize)/8; k++ {
		if e, ok := segment.LoadIndexEntry(good, k); ok && e.Offset > 0 {
			lastK = k
		}
	}
	e, _ := segment.LoadIndexEntry(good, lastK)
	for _, c := range []struct {
		name string
		make func(path string)
	}{
		{"empty file", func(p string) { os.WriteFile(p, nil, 0o640) }},
		{"short", func(p string) { os.WriteFile(p, good[:len(good)-8], 0o640) }},
		{"bad magic", func(p string) { b := clone(good); b[1] = 'x'; os.WriteFile(p, b, 0o640) }},
		{"bad header CRC", func(p string) { b := clone(good); b[13] ^= 1; os.WriteFile(p, b, 0o640) }},
		{"another segment's", func(p string) {
			o, _ := os.ReadFile(filepath.Join(dir, segment.IndexName(m.Segments[0].Number())))
			os.WriteFile(p, o, 0o640)
		}},
		{"entry mid-record", func(p string) { os.WriteFile(p, entry(clone(good), lastK, e.Offset+8, e.Index), 0o640) }},
		{"entry with the wrong index", func(p string) { os.WriteFile(p, entry(clone(good), lastK, e.Offset, e.Index+1), 0o640) }},
		{"entry before its block", func(p string) { os.WriteFile(p, entry(clone(good), lastK, 64, 0), 0o640) }},
		{"entry beyond the records", func(p string) {
			os.WriteFile(p, entry(clone(good), lastK+1, (lastK+1)*segment.IndexBlock, e.Index+5000), 0o640)
		}},
		{"entry past the segment", func(p string) { os.WriteFile(p, entry(clone(good), lastK, 1<<20, e.Index), 0o640) }},
		{"symbolic link", func(p string) { os.Symlink(segment.IndexName(m.Segments[0].Number()), p) }},
		{"FIFO", func(p string) { syscall.Mkfifo(p, 0o640) }},
		{"directory", func(p string) { os.Mkdir(p, 0o750) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			hostile := copyRing(t, dir, true)
			p := filepath.Join(hostile, idx)
			os.Remove(p)
			c.make(p)
			for _, sel := range selections(t, plain) {
				want, werr, _ := readSel(t, plain, sel)
				got, err, _ := readSel(t, hostile, sel)
				if err != nil || werr != nil || !equal(got, want) {
					t.Fatalf("%+v: %d records, %v; without the index %d, %v", sel, len(got), err, len(want), werr)
				}
			}
		})
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// damageAt names the file, offset and kind of the damage err reports, without the
// directory: "" for none.
func damageAt(err error) string {
	var ce *segment.CorruptionError
	if !errors.As(err, &ce) {
		return fmt.Sprint(err)
	}
	return fmt.Sprintf("%s:%d: %v", filepath.Base(ce.Path), ce.Offset, ce.Err)
}
