package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

func manifestOf(t *testing.T, dir string) *segment.Manifest {
	t.Helper()
	d, err := ringdir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, err := d.ReadManifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWriter_NumbersNeverReused opens and closes a ring again and again, with and
// without records in between: every segment number a producer creates is higher than
// any it created before, so a follower holding an old segment open never mistakes a new
// one for it. A clean stop with no records keeps the empty hot segment listed.
func TestWriter_NumbersNeverReused(t *testing.T) {
	dir := ringtest.Dir(t)
	var highest uint64
	next := uint64(1)
	for i, records := range []int{0, 0, 3, 0, 1, 0, 0} {
		w, err := Open(dir, Options{SegmentSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		m := manifestOf(t, dir)
		hot, ok := m.Hot()
		if !ok || hot.Number() <= highest {
			t.Fatalf("run %d: hot segment %v (listed %v), highest number used before %d", i, hot.Name, ok, highest)
		}
		highest = hot.Number()
		for j := 0; j < records; j++ {
			if _, err := w.Append([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if got := w.NextSeq(); got != next+uint64(records) {
			t.Fatalf("run %d: next sequence %d, want %d", i, got, next+uint64(records))
		}
		next += uint64(records)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m = manifestOf(t, dir)
		last := m.Segments[len(m.Segments)-1]
		if last.Number() != highest {
			t.Fatalf("run %d: after a clean stop the last listed segment is %s, the highest used %d", i, last.Name, highest)
		}
		if records == 0 && (last.Sealed || !exists(filepath.Join(dir, last.Name))) {
			t.Fatalf("run %d: empty hot segment %s not kept listed (sealed %v)", i, last.Name, last.Sealed)
		}
	}
	_, seqs, _ := readAll(t, dir)
	if len(seqs) != 4 || seqs[0] != 1 || seqs[3] != 4 {
		t.Fatalf("records %v, want 1..4", seqs)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestWriter_RetentionKept reopens a ring without saying how many segments it retains:
// it keeps the number it had. A lower number drops the oldest segments, and says so.
func TestWriter_RetentionKept(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096, Segments: 16})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 1000)
	for i := 0; i < 16*4; i++ {
		if _, err := w.Append(payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before := manifestOf(t, dir)

	var notes []string
	logf := func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
	w, err = Open(dir, Options{Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	m := manifestOf(t, dir)
	// The new hot segment takes the place of the oldest, as at any roll of a full ring.
	if m.SegmentsMax != 16 || len(m.Segments) != 16 || m.Segments[0] != before.Segments[1] {
		t.Fatalf("reopened without Segments: segments_max %d, %d segments listed from %s (before: from %s); notes %q",
			m.SegmentsMax, len(m.Segments), m.Segments[0].Name, before.Segments[0].Name, notes)
	}
	if len(notes) != 0 {
		t.Fatalf("unexpected notes %q", notes)
	}

	w, err = Open(dir, Options{Segments: 4, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	m = manifestOf(t, dir)
	if m.SegmentsMax != 4 || len(m.Segments) != 4 {
		t.Fatalf("lowered to 4: segments_max %d, %d listed", m.SegmentsMax, len(m.Segments))
	}
	all := strings.Join(notes, "\n")
	if !strings.Contains(all, "retention lowered from 16 to 4") || !strings.Contains(all, "dropping the 13 oldest segments") {
		t.Fatalf("notes %q do not say what lowering the retention dropped", notes)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(names) != 4 {
		t.Fatalf("%d segment files left, want 4", len(names))
	}
}

// TestWriter_RefusesUnsafeRing refuses a ring directory, or a file in it, that a user
// other than the producer's could write: such a ring's records could come from anyone.
func TestWriter_RefusesUnsafeRing(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		root  bool
	}{
		{"world-writable directory", func(t *testing.T, dir string) { os.Mkdir(dir, 0o777); os.Chmod(dir, 0o777) }, false},
		{"group-writable directory", func(t *testing.T, dir string) { os.Mkdir(dir, 0o770); os.Chmod(dir, 0o770) }, false},
		{"directory of another user", func(t *testing.T, dir string) { os.Mkdir(dir, 0o755); os.Chown(dir, 4242, 4242) }, true},
		{"manifest of another user", func(t *testing.T, dir string) { ringWith(t, dir); os.Chown(filepath.Join(dir, "manifest"), 4242, -1) }, true},
		{"lock of another user", func(t *testing.T, dir string) { ringWith(t, dir); os.Chown(filepath.Join(dir, "lock"), 4242, -1) }, true},
		{"group-writable segment", func(t *testing.T, dir string) {
			ringWith(t, dir)
			os.Chmod(filepath.Join(dir, manifestOf(t, dir).Segments[0].Name), 0o660)
		}, false},
		{"planted file", func(t *testing.T, dir string) {
			ringWith(t, dir)
			os.WriteFile(filepath.Join(dir, segment.Name(99)), nil, 0o666)
			os.Chmod(filepath.Join(dir, segment.Name(99)), 0o666)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
					t.Fatal("this test changes file owners and needs root")
				}
				t.Skip("needs root")
			}
			dir := ringtest.Dir(t)
			c.setup(t, dir)
			w, err := Open(dir, Options{SegmentSize: 4096})
			if err == nil {
				w.Close()
				t.Fatal("opened an unsafe ring")
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("error %v, want ErrUnsafe", err)
			}
			t.Log(err)
		})
	}
}

// ringWith makes a ring in dir with a few records.
func ringWith(t *testing.T, dir string) {
	t.Helper()
	w, err := Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		w.Append([]byte("a record of some length"))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriter_ID gives a ring an identity when it is created, keeps it across producer
// runs, gives one to a ring an older producer made without, refuses a malformed one, and
// gives a ring created anew at the same path a new one.
func TestWriter_ID(t *testing.T) {
	dir := ringtest.Dir(t)
	open := func() (string, error) {
		w, err := Open(dir, Options{SegmentSize: 4096})
		if err != nil {
			return "", err
		}
		id := w.ID()
		w.Close()
		return id, nil
	}
	id, err := open()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, segment.IDName))
	if got, perr := segment.ParseID(b); err != nil || perr != nil || got != id {
		t.Fatalf("id file %q (%v, %v), writer says %q", b, err, perr, id)
	}
	if again, err := open(); err != nil || again != id {
		t.Fatalf("reopened: id %q (%v), want %q", again, err, id)
	}
	os.Remove(filepath.Join(dir, segment.IDName)) // as an older producer left it
	adopted, err := open()
	if err != nil || adopted == id || len(adopted) != segment.IDLen {
		t.Fatalf("ring without id: got %q (%v)", adopted, err)
	}
	if again, err := open(); err != nil || again != adopted {
		t.Fatalf("adopted id not kept: %q (%v), want %q", again, err, adopted)
	}
	os.WriteFile(filepath.Join(dir, segment.IDName), []byte("not an id\n"), 0o640)
	if _, err := open(); !errors.Is(err, segment.ErrID) {
		t.Fatalf("malformed id: %v", err)
	}
	os.RemoveAll(dir)
	if anew, err := open(); err != nil || anew == adopted {
		t.Fatalf("ring created anew: id %q (%v), the old one was %q", anew, err, adopted)
	}
}
