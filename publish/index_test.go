package publish

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// checkIndex checks the index of segment num of the ring in dir against the segment's
// records, as docs/FORMAT.md ("The segment index") defines every entry: entry k is the
// first record at or after k*B, or zero when no record was published there.
func checkIndex(t *testing.T, dir string, num uint64) (entries int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, segment.Name(num)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := segment.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	x, err := os.ReadFile(filepath.Join(dir, segment.IndexName(num)))
	if err != nil {
		t.Fatalf("segment %d: %v", num, err)
	}
	ih, err := segment.ParseIndexHeader(x, num, int64(len(b)), int64(len(x)))
	if err != nil {
		t.Fatalf("segment %d: %v", num, err)
	}
	if ih.Block != segment.IndexBlock {
		t.Fatalf("block %d, want %d", ih.Block, segment.IndexBlock)
	}
	var offs []int
	sc := segment.NewScanner(segment.Name(num), b, h)
	for {
		off := sc.Offset()
		if !sc.Next() {
			break
		}
		offs = append(offs, off)
	}
	if sc.Err() != nil {
		t.Fatal(sc.Err())
	}
	for k := 1; k <= ih.Count; k++ {
		e, ok := segment.LoadIndexEntry(x, k)
		var want segment.IndexEntry
		found := false
		for i, off := range offs {
			if off >= k*ih.Block {
				want, found = segment.IndexEntry{Offset: off, Index: uint64(i)}, true
				break
			}
		}
		if ok != found || e != want {
			t.Fatalf("segment %d entry %d: %+v (written %v), want %+v (written %v)", num, k, e, ok, want, found)
		}
		if ok {
			entries++
		}
	}
	return entries
}

// TestIndex_Written checks every entry of the indexes a producer writes, with records
// shorter and longer than a block, across rolls, in a hot segment and in sealed ones;
// that retention removes a segment's index with it; and that segments below 1 MiB get
// none.
func TestIndex_Written(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 1 << 20, Segments: 3})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 63, 100, 70000, 5, 200000, 4000, 131072, 1}
	for i := 0; i < 400; i++ {
		if _, err := w.Append(make([]byte, sizes[i%len(sizes)])); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			w.AppendBatch([][]byte{make([]byte, 10), make([]byte, 66000), make([]byte, 3)})
		}
	}
	m := manifestOf(t, dir)
	if len(m.Segments) != 3 || m.Segments[0].Number() < 5 {
		t.Fatalf("manifest %+v: want 3 segments after several rolls", m.Segments)
	}
	entries := 0
	for _, e := range m.Segments {
		entries += checkIndex(t, dir, e.Number())
	}
	if entries < 20 {
		t.Fatalf("%d entries written in 3 segments of 1 MiB", entries)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(names) != 3 {
		t.Fatalf("index files %v, want the 3 of the listed segments", names)
	}

	small := ringtest.Dir(t)
	w, err = Open(small, Options{SegmentSize: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i++ {
		w.Append([]byte("0123456789abcdef0123456789abcdef"))
	}
	w.Close()
	if names, _ := filepath.Glob(filepath.Join(small, "*.idx")); len(names) != 0 {
		t.Fatalf("segments of 512 KiB got indexes %v", names)
	}
}

// TestIndex_RemovedWithTakenSegment: when a taker took a segment file, retention still
// removes the segment's index.
func TestIndex_RemovedWithTakenSegment(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 1 << 20, Segments: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rec := make([]byte, 100000)
	for w.hot.num < 2 {
		w.Append(rec)
	}
	// Take segment 1 as a taker does (rename, then unlink).
	if err := os.Rename(filepath.Join(dir, segment.Name(1)), filepath.Join(dir, segment.TakenName(1))); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, segment.TakenName(1)))
	for w.hot.num < 4 {
		w.Append(rec)
	}
	w.Close()
	for _, n := range []uint64{1, 2} {
		if _, err := os.Stat(filepath.Join(dir, segment.IndexName(n))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("index of retired segment %d: %v", n, err)
		}
	}
}

// TestIndex_Recovery: a crash leaves the hot segment's index, which recovery keeps and
// which stays right for the sealed segment; an index whose segment is not listed is
// removed.
func TestIndex_Recovery(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		w.Append([]byte(strings.Repeat("x", i%300)))
	}
	hot := w.hot.num
	crash(w)
	stray := filepath.Join(dir, segment.IndexName(hot+5))
	if err := os.WriteFile(stray, make([]byte, 64), 0o640); err != nil {
		t.Fatal(err)
	}
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index of an unlisted segment left behind: %v", err)
	}
	if n := checkIndex(t, dir, hot); n == 0 {
		t.Fatal("recovered segment's index has no entry")
	}
	if w.hot.num <= hot+5 {
		t.Fatalf("new hot segment %d", w.hot.num)
	}
}

// TestIndex_Reused: the file of a removed segment's index becomes a later segment's
// index (the same inode under the new name), with that segment's header and entries
// only; free files do not outlive the writer.
func TestIndex_Reused(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 1 << 20, Segments: 2})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]uint64{} // inode -> the segment whose index it was first
	reused := 0
	rec := make([]byte, 3000)
	for w.NextSeq() < 3000 {
		if _, err := w.Append(rec); err != nil {
			t.Fatal(err)
		}
		num := w.hot.num
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, segment.IndexName(num)), &st); err != nil {
			t.Fatal(err)
		}
		if first, ok := seen[st.Ino]; !ok {
			seen[st.Ino] = num
		} else if first != num {
			seen[st.Ino] = num
			reused++
		}
	}
	m := manifestOf(t, dir)
	for _, e := range m.Segments {
		checkIndex(t, dir, e.Number())
	}
	if reused == 0 {
		t.Fatalf("no index file reused in %d segments", m.Segments[len(m.Segments)-1].Number())
	}
	w.Close()
	if names, _ := filepath.Glob(filepath.Join(dir, ".*")); len(names) != 0 {
		t.Fatalf("files left after Close: %v", names)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*.idx")); len(names) != 2 {
		t.Fatalf("indexes %v, want those of the 2 listed segments", names)
	}
}
