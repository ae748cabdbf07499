package publish

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// reusePayload is record seq's payload: its number and a length that varies with it, so
// that records of one segment end where an old record of a reused file does not.
func reusePayload(seq uint64) []byte {
	return []byte(fmt.Sprintf("%d:%s", seq, strings.Repeat("x", int(seq*7%300))))
}

// inodeOf returns the inode of path, or 0 when it is missing.
func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// appendWatching appends records from seq on until the writer has rolled rolls times,
// recording the inode each new hot segment has: by inode, the segment numbers that had
// it. It returns the next sequence number and how many segments got the file of an
// earlier one. After each roll it waits (up to a second) for the writer's preparer to
// make the next segment ahead, as it does when records come slower than segments can
// be made: which file a segment gets then does not depend on timing.
func appendWatching(t *testing.T, w *Writer, dir string, seq uint64, rolls int, seen map[uint64][]uint64) (uint64, int) {
	t.Helper()
	reused := 0
	w.mu.Lock()
	hot := w.hot.num
	w.mu.Unlock()
	if len(seen) == 0 {
		seen[inodeOf(t, filepath.Join(dir, segment.Name(hot)))] = []uint64{hot}
	}
	for rolls > 0 {
		got, err := w.Append(reusePayload(seq))
		if err != nil || got != seq {
			t.Fatalf("append %d: %d, %v", seq, got, err)
		}
		seq++
		w.mu.Lock()
		num := w.hot.num
		w.mu.Unlock()
		if num == hot {
			continue
		}
		hot = num
		rolls--
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
			w.mu.Lock()
			ready := w.spare != nil && w.spare.num == num+1 && len(w.doomed) == 0
			w.mu.Unlock()
			if ready {
				break
			}
		}
		ino := inodeOf(t, filepath.Join(dir, segment.Name(num)))
		if len(seen[ino]) > 0 {
			reused++
		}
		seen[ino] = append(seen[ino], num)
	}
	return seq, reused
}

// checkRing reads every listed segment of the ring in dir with the segment scanner and
// checks every record against reusePayload, up to the sequence next-1, and that the
// records after each segment's last are not all zero in at least one segment when old
// is set: the old records of a reused file, which readers must read past.
func checkRing(t *testing.T, dir string, next uint64, old bool) {
	t.Helper()
	m, err := segment.DecodeManifest(mustRead(t, filepath.Join(dir, segment.ManifestName)))
	if err != nil {
		t.Fatal(err)
	}
	stale := false
	want := m.Segments[0].FirstSeq
	for _, e := range m.Segments {
		b := mustRead(t, filepath.Join(dir, e.Name))
		h, err := segment.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		sc := segment.NewScanner(e.Name, b, h)
		for sc.Next() {
			r := sc.Record()
			if r.Seq != want || !bytes.Equal(r.Data, reusePayload(r.Seq)) {
				t.Fatalf("%s: record %d (%q), want %d", e.Name, r.Seq, r.Data, want)
			}
			want++
		}
		if sc.Err() != nil {
			t.Fatalf("%s: %v", e.Name, sc.Err())
		}
		if bytes.ContainsFunc(b[sc.Offset():], func(r rune) bool { return r != 0 }) {
			stale = true
		}
	}
	if want != next {
		t.Fatalf("records up to %d, want up to %d", want-1, next-1)
	}
	if old && !stale {
		t.Fatal("no segment holds old records past its end: no file was reused")
	}
}

// openReusing opens a writer on a new ring of three 64 KiB segments.
func openReusing(t *testing.T) (string, *Writer) {
	t.Helper()
	if noReuse {
		t.Skip("FILERING_NO_REUSE=1 turns reuse off")
	}
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 64 << 10, Segments: 3})
	if err != nil {
		t.Fatal(err)
	}
	return dir, w
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReuse_FilesOfRemovedSegments checks that the files of segments retention removes
// become later segments (docs/FORMAT.md, "Reusing a segment file"), that every record
// reads back right past the old records they still hold, and that Close leaves no kept
// file behind.
func TestReuse_FilesOfRemovedSegments(t *testing.T) {
	dir, w := openReusing(t)
	seen := map[uint64][]uint64{}
	next, reused := appendWatching(t, w, dir, 1, 20, seen)
	// Segments 4 to 21 may reuse files: the first three have none to take.
	if reused < 15 {
		t.Fatalf("%d of 20 new segments reused a removed one's file; want most", reused)
	}
	checkRing(t, dir, next, true)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRing(t, dir, next, true)
	names, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(names) > 0 {
		t.Fatalf("left behind: %v", names)
	}
	// A producer after it continues the sequence over the same files.
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	next, reused = appendWatching(t, w, dir, next, 5, seen)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRing(t, dir, next, true)
	if reused < 2 {
		t.Fatalf("%d of 5 segments after a restart reused a removed one's file", reused)
	}
}

// TestReuse_NotWhileOpen holds one segment's file open and another's mapped, as readers
// do, and gives a third a second name, as a taker that claims by link and unlink and
// dies between the two leaves it: none is ever reused, and all still hold their own
// records when the ring has long moved past them.
func TestReuse_NotWhileOpen(t *testing.T) {
	dir, w := openReusing(t)
	defer w.Close()
	seen := map[uint64][]uint64{}
	next, _ := appendWatching(t, w, dir, 1, 2, seen) // segments 1 to 3, 3 hot
	held, err := os.Open(filepath.Join(dir, segment.Name(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	f, err := os.Open(filepath.Join(dir, segment.Name(2)))
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := unix.Mmap(int(f.Fd()), 0, 64<<10, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mapped)
	linked := filepath.Join(dir, segment.TakenName(3))
	if err := os.Link(filepath.Join(dir, segment.Name(3)), linked); err != nil {
		t.Fatal(err)
	}
	ino1, ino2, ino3 := inodeOf(t, held.Name()), inodeOf(t, filepath.Join(dir, segment.Name(2))), inodeOf(t, linked)
	_, reused := appendWatching(t, w, dir, next, 20, seen)
	if len(seen[ino1]) != 1 || len(seen[ino2]) != 1 || len(seen[ino3]) != 1 {
		t.Fatalf("a held file was reused: inodes %d, %d, %d were segments %v, %v, %v",
			ino1, ino2, ino3, seen[ino1], seen[ino2], seen[ino3])
	}
	if reused == 0 {
		t.Fatal("no file reused at all")
	}
	for _, c := range []struct {
		num uint64
		b   []byte
	}{{1, nil}, {2, mapped}, {3, mustRead(t, linked)}} {
		b := c.b
		if b == nil {
			b = make([]byte, 64<<10)
			if _, err := held.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
		}
		h, err := segment.ParseHeader(b)
		if err != nil || h.Number != c.num {
			t.Fatalf("held segment %d: header %+v, %v", c.num, h, err)
		}
		sc := segment.NewScanner(segment.Name(c.num), b, h)
		n := 0
		for ; sc.Next(); n++ {
			if r := sc.Record(); !bytes.Equal(r.Data, reusePayload(r.Seq)) {
				t.Fatalf("held segment %d: record %d is %q", c.num, r.Seq, r.Data)
			}
		}
		if sc.Err() != nil || n == 0 {
			t.Fatalf("held segment %d: %d records, %v", c.num, n, sc.Err())
		}
	}
}

// TestReuse_LeaseBroken opens the kept file a spare was made of while the writer holds
// its lease, as a reader that looked its old name up a moment before would: the open
// fails with EAGAIN, and the writer then makes the next segment in a new file rather than
// change one a reader may hold.
func TestReuse_LeaseBroken(t *testing.T) {
	dir, w := openReusing(t)
	defer w.Close()
	seen := map[uint64][]uint64{}
	next, _ := appendWatching(t, w, dir, 1, 6, seen)
	var tmp string
	var ino uint64
	for deadline := time.Now().Add(10 * time.Second); tmp == "" && time.Now().Before(deadline); {
		w.mu.Lock()
		if sp := w.spare; sp != nil && sp.reused {
			tmp, ino = sp.f.Name(), inodeOf(t, sp.f.Name())
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	if tmp == "" {
		t.Fatal("no spare made of a kept file")
	}
	_, err := unix.Open(tmp, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != unix.EAGAIN {
		t.Fatalf("open of a leased kept file: %v, want EAGAIN", err)
	}
	w.mu.Lock()
	hot := w.hot.num
	w.mu.Unlock()
	next, _ = appendWatching(t, w, dir, next, 1, seen)
	if got := inodeOf(t, filepath.Join(dir, segment.Name(hot+1))); got == ino {
		t.Fatalf("segment %d reused the file whose lease a reader broke", hot+1)
	}
	checkRing(t, dir, next, false)
}

// TestReuse_FullFileSystem fills the file system (every allocation refused) under a
// writer whose ring is full: each new segment is made of the file the roll before removed
// by retention, so the writer goes on as before, drops nothing beyond retention, and
// says nothing.
func TestReuse_FullFileSystem(t *testing.T) {
	if noReuse {
		t.Skip("FILERING_NO_REUSE=1 turns reuse off")
	}
	fs := &fullFS{}
	dir := ringtest.Dir(t)
	var said noteLog
	w, err := openFS(dir, Options{SegmentSize: 64 << 10, Segments: 3, Logf: said.logf},
		func(real fileSystem) fileSystem { fs.fileSystem = real; return fs })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64][]uint64{}
	next, _ := appendWatching(t, w, dir, 1, 4, seen)
	fs.full.Store(true)
	next, reused := appendWatching(t, w, dir, next, 10, seen)
	if reused != 10 {
		t.Fatalf("%d of 10 segments made on a full file system reused a file", reused)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkRing(t, dir, next, true)
	if notes := said.all(); len(notes) != 0 || w.Lost() != 0 {
		t.Fatalf("%d records lost, notes %q; want none", w.Lost(), notes)
	}
}
