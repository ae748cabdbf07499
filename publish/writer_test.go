package publish

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
	"golang.org/x/sys/unix"
)

// readAll reads every record of the ring at dir with a plain scan of the manifest's
// segments, independent of the watch package.
func readAll(t testing.TB, dir string) (m *segment.Manifest, seqs []uint64, data []string) {
	t.Helper()
	d, err := ringdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if m, err = d.ReadManifest(); err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Segments {
		b, err := os.ReadFile(filepath.Join(dir, e.Name))
		if err != nil {
			t.Fatal(err)
		}
		h, err := segment.ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		s := segment.NewScanner(e.Name, b, h)
		for s.Next() {
			seqs = append(seqs, s.Record().Seq)
			data = append(data, string(s.Record().Data))
		}
		if s.Err() != nil {
			t.Fatal(s.Err())
		}
		if e.Sealed && !s.Done() {
			t.Fatalf("%s: listed sealed but not done", e.Name)
		}
	}
	return m, seqs, data
}

func TestWriter_AppendReopen(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 500; i++ {
		seq, err := w.Append([]byte(fmt.Sprint(i)))
		if err != nil || seq != uint64(i) {
			t.Fatalf("Append %d = %d, %v", i, seq, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m, seqs, data := readAll(t, dir)
	if len(m.Segments) != 4 {
		t.Fatalf("%d segments retained, want 4", len(m.Segments))
	}
	if _, hot := m.Hot(); hot {
		t.Fatal("hot segment after Close")
	}
	if seqs[len(seqs)-1] != 500 || data[len(data)-1] != "500" {
		t.Fatalf("last record %d %q", seqs[len(seqs)-1], data[len(data)-1])
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 || data[i] != fmt.Sprint(seqs[i]) {
			t.Fatalf("record %d: seq %d data %q after %d", i, seqs[i], data[i], seqs[i-1])
		}
	}

	// Sequence numbers continue across a restart.
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := w.Append([]byte("501")); err != nil || seq != 501 {
		t.Fatalf("after reopen Append = %d, %v", seq, err)
	}
	w.Close()
	if _, err := Open(dir, Options{SegmentSize: 8192}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("reopen with another segment size: %v", err)
	}
}

func TestWriter_SecondProducerRefused(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = Open(dir, Options{})
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Open: %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("message does not name the pid: %v", err)
	}
}

// crash abandons a writer as a killed process would: no seal, no manifest, lock freed.
func crash(w *Writer) {
	close(w.stop)
	<-w.done
	w.release()
}

func TestWriter_CrashRecovery(t *testing.T) {
	cases := []struct {
		name  string
		tear  bool // leave a torn record after the last good one
		empty bool // crash with an empty hot segment
	}{
		{"clean tail", false, false},
		{"torn tail", true, false},
		{"empty hot segment", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := ringtest.Dir(t)
			w, err := Open(dir, Options{SegmentSize: 4096, Segments: 8})
			if err != nil {
				t.Fatal(err)
			}
			n := 100
			if c.empty {
				n = 0
			}
			for i := 1; i <= n; i++ {
				w.Append([]byte(fmt.Sprint(i)))
			}
			if c.tear {
				h := w.hot
				// Commit word of a 5-byte record, body never written.
				copy(h.b[h.off:], []byte{29, 0, 0, 0, 1, 2, 3, 4})
			}
			crash(w)

			w, err = Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			seq, err := w.Append([]byte("after"))
			if err != nil || seq != uint64(n+1) {
				t.Fatalf("first Append after recovery = %d, %v; want %d", seq, err, n+1)
			}
			w.Close()
			_, seqs, data := readAll(t, dir)
			if len(seqs) != n+1 || data[len(data)-1] != "after" {
				t.Fatalf("read %d records, last %q", len(seqs), data[len(data)-1])
			}
		})
	}
}

func TestWriter_SweepsLeftovers(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	w.Append([]byte("x"))
	crash(w)
	// A temporary file and a segment created but never listed, as a crash leaves them.
	for _, name := range []string{".0000000000000009.seg.new", "0000000000000009.seg"} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, 4096), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, name := range []string{".0000000000000009.seg.new", "0000000000000009.seg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
	if w.hot.num <= 9 {
		t.Fatalf("new hot segment %d reuses a number already seen", w.hot.num)
	}
}

func TestWriter_TooLarge(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	max := segment.MaxPayload(4096)
	if _, err := w.Append(make([]byte, max+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Append: %v", err)
	}
	if seq, err := w.Append(make([]byte, max)); err != nil || seq != 1 {
		t.Fatalf("largest Append = %d, %v", seq, err)
	}
	if seq, err := w.Append(bytes.Repeat([]byte("y"), max)); err != nil || seq != 2 {
		t.Fatalf("second largest Append = %d, %v", seq, err)
	}
}

func TestWriter_SealAfter(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SealAfter: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Append([]byte("lonely"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, _ := ringdir.Open(dir)
		m, err := d.ReadManifest()
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Segments) == 2 && m.Segments[0].Sealed && m.Segments[0].LastSeq == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hot segment not sealed after 5s: %+v", m.Segments)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriter_Modes(t *testing.T) {
	dir := ringtest.Dir(t)
	old := umask(0o077)
	defer umask(old)
	w, err := Open(dir, Options{FileMode: 0o644, DirMode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	w.Append([]byte("x"))
	w.Close()
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v", fi.Mode().Perm())
	}
	for _, name := range []string{"manifest", "lock", segment.Name(1)} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v", name, fi.Mode().Perm(), err)
		}
	}
}

// TestOpen_Group opens a ring two missing directories deep with a group: the ring
// directory and both directories Open creates above it get DirMode and the group, so that
// the group's readers can reach the ring; every file gets FileMode and the group. A
// directory that already existed keeps its own.
func TestOpen_Group(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
			t.Fatal("this test needs root")
		}
		t.Skip("needs root, to give files a group it is not in")
	}
	const gid = 4242
	top := filepath.Dir(ringtest.Dir(t))
	dir := filepath.Join(top, "a", "b", "ring")
	old := umask(0o077)
	defer umask(old)
	w, err := Open(dir, Options{DirMode: 0o750, FileMode: 0o640, GID: gid})
	if err != nil {
		t.Fatal(err)
	}
	w.Append([]byte("x"))
	w.Close()
	check := func(p string, mode os.FileMode, gid uint32) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if got := os.FileMode(st.Mode).Perm(); got != mode || st.Gid != gid {
			t.Errorf("%s: mode %v, group %d; want %v, %d", p, got, st.Gid, mode, gid)
		}
	}
	for _, p := range []string{filepath.Join(top, "a"), filepath.Join(top, "a", "b"), dir} {
		check(p, 0o750, gid)
	}
	for _, name := range []string{"manifest", "lock", segment.Name(1)} {
		check(filepath.Join(dir, name), 0o640, gid)
	}
	var st unix.Stat_t
	if err := unix.Lstat(top, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid == gid {
		t.Errorf("%s existed, and got the group", top)
	}
}

func TestOpen_RefusesSymlink(t *testing.T) {
	dir := ringtest.Dir(t)
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	link := dir + "-link"
	os.Symlink(dir, link)
	if _, err := Open(link, Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Open through a symlink: %v", err)
	}
}

// BenchmarkAppend appends records of each size to a default ring, whose 2 MiB segments
// map on huge pages where the kernel allows, and, for comparison, to a ring of 1 MiB
// segments, which never do.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{64, 1024, 4096} {
		for _, seg := range []int64{DefaultSegmentSize, 1 << 20} {
			name := fmt.Sprint(n)
			if seg != DefaultSegmentSize {
				name += fmt.Sprintf("/segment=%dKiB", seg>>10)
			}
			b.Run(name, func(b *testing.B) {
				w, err := Open(ringtest.Dir(b), Options{SegmentSize: seg})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				p := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := w.Append(p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestAppend_NoAllocations(t *testing.T) {
	w, err := Open(ringtest.Dir(t), Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := make([]byte, 64)
	if n := testing.AllocsPerRun(5000, func() { w.Append(p) }); n != 0 {
		t.Fatalf("Append allocates %.2f times per record", n)
	}
}

// A hot segment whose file vanished while its producer was dead: the sequence skips
// every number it could have held, and its segment number is not used again.
func TestWriter_RecoverMissingHot(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		w.Append([]byte("x"))
	}
	hot := w.hot.num
	first := w.hot.entry.FirstSeq
	crash(w)
	os.Remove(filepath.Join(dir, segment.Name(hot)))
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := w.Append([]byte("after"))
	if want := first + (4096-segment.HeaderSize)/segment.RecordHeaderSize; err != nil || seq != want {
		t.Fatalf("first sequence after recovery %d (%v), want %d", seq, err, want)
	}
	if w.hot.num <= hot {
		t.Fatalf("segment number %d reused after %d went missing", w.hot.num, hot)
	}
	w.Close()
	readAll(t, dir) // the manifest, with its gap, is valid
}

// A taker can claim a full segment between the producer sealing it and replacing the
// manifest; a crash right then leaves the manifest naming it hot, with its file gone.
// Recovery learns where it ended from the claim, or from the next segment's header.
func TestWriter_RecoverHotTakenBeforeManifest(t *testing.T) {
	for _, where := range []string{"claim", "next segment"} {
		t.Run(where, func(t *testing.T) {
			dir := ringtest.Dir(t)
			w, err := Open(dir, Options{SegmentSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 50; i++ {
				w.Append([]byte("x"))
			}
			hot := w.hot.num
			next := w.next
			crash(w)
			name := filepath.Join(dir, segment.Name(hot))
			switch where {
			case "claim":
				os.Rename(name, filepath.Join(dir, segment.TakenName(hot)))
			case "next segment":
				// The segment created by the roll, not yet listed, and the sealed one
				// already taken and finished.
				b, _ := os.ReadFile(name)
				h, _ := segment.ParseHeader(b)
				nb := make([]byte, 4096)
				segment.PutHeader(nb, segment.Header{Size: 4096, Number: hot + 1, FirstSeq: h.FirstSeq + 50})
				os.WriteFile(filepath.Join(dir, segment.Name(hot+1)), nb, 0o640)
				os.Remove(name)
			}
			w, err = Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if seq, err := w.Append([]byte("after")); err != nil || seq != next {
				t.Fatalf("first sequence after recovery %d (%v), want %d: no numbers skipped", seq, err, next)
			}
		})
	}
}

func TestAppendBatch(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096, Segments: 100})
	if err != nil {
		t.Fatal(err)
	}
	var batch [][]byte
	for i := 1; i <= 1000; i++ {
		batch = append(batch, []byte(fmt.Sprint(i)))
	}
	if first, n, err := w.AppendBatch(batch[:1]); err != nil || first != 1 || n != 1 {
		t.Fatalf("AppendBatch of one = %d, %d, %v", first, n, err)
	}
	// Across many rolls.
	if first, n, err := w.AppendBatch(batch[1:]); err != nil || first != 2 || n != 999 {
		t.Fatalf("AppendBatch = %d, %d, %v", first, n, err)
	}
	tooBig := append(batch[:2:2], make([]byte, 5000))
	if _, n, err := w.AppendBatch(tooBig); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Fatalf("AppendBatch with an oversized record = %d, %v", n, err)
	}
	if w.NextSeq() != 1001 {
		t.Fatalf("next sequence %d after a refused batch", w.NextSeq())
	}
	w.Close()
	_, seqs, data := readAll(t, dir)
	for i, s := range seqs {
		if data[i] != fmt.Sprint(s) {
			t.Fatalf("record %d holds %q", s, data[i])
		}
	}
	if seqs[len(seqs)-1] != 1000 {
		t.Fatalf("last record %d", seqs[len(seqs)-1])
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, n := range []int{64, 1024, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			w, err := Open(ringtest.Dir(b), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			batch := make([][]byte, 256)
			for i := range batch {
				batch[i] = make([]byte, n)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				k := min(len(batch), b.N-i)
				if _, _, err := w.AppendBatch(batch[:k]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A producer killed while recovering, after it dropped an empty hot segment from its
// manifest but before writing that manifest: the next one must still find the file, so
// that it does not skip sequence numbers.
func TestWriter_CrashDuringRecoveryOfEmptyHot(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ { // fills the first segment and starts the second
		w.Append([]byte("x"))
	}
	next := w.next
	w.mu.Lock()
	w.roll() // an empty hot segment, as a crash right after a roll leaves it
	w.mu.Unlock()
	crash(w)
	// Recover, but die before the new manifest is written.
	w2 := &Writer{dir: mustOpenDir(t, dir), opts: Options{Segments: DefaultSegments, Logf: func(string, ...any) {}}}
	w2.fs = osFS{dir: w2.dir}
	if err := w2.recover(); err != nil {
		t.Fatal(err)
	}
	w2.dir.Close()
	w, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if seq, err := w.Append([]byte("after")); err != nil || seq != next {
		t.Fatalf("first sequence after two recoveries %d (%v), want %d", seq, err, next)
	}
}

func mustOpenDir(t *testing.T, dir string) *ringdir.Dir {
	t.Helper()
	d, err := ringdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
