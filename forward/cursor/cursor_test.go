package cursor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/watch"
)

const id1 = "0123456789abcdef0123456789abcdef"

func TestCursor_SaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cursor")
	c, err := Load(path)
	if err != nil || !c.IsZero() {
		t.Fatalf("Load of a missing file: %v, %v", c, err)
	}
	want := Cursor{Ring: id1, Seq: 42}
	if err := want.Save(path); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(path); err != nil || c != want {
		t.Fatalf("Load: %v, %v; want %v", c, err, want)
	}
	b, _ := os.ReadFile(path)
	if string(b) != `{"ring":"`+id1+`","seq":42}`+"\n" {
		t.Fatalf("file holds %q", b)
	}
	// Saved again: replaced, and no temporary file left.
	want.Seq = 43
	if err := want.Save(path); err != nil {
		t.Fatal(err)
	}
	if c, _ = Load(path); c != want {
		t.Fatalf("after a second save: %v", c)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want the cursor file alone", len(entries))
	}
	if err := (Cursor{Ring: "nope", Seq: 1}).Save(path); err == nil {
		t.Fatal("saved a cursor with a malformed ring identity")
	}
}

func TestCursor_LoadBad(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":    "",
		"garbage":  "hello",
		"two":      `{"ring":"` + id1 + `","seq":1}{"ring":"` + id1 + `","seq":2}`,
		"unknown":  `{"ring":"` + id1 + `","seq":1,"x":1}`,
		"badring":  `{"ring":"XYZ","seq":1}`,
		"seqalone": `{"ring":"","seq":5}`,
		"long":     `{"ring":"` + id1 + `","seq":1}` + strings.Repeat(" ", 5000),
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o600)
		if c, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Load = %v, %v; want an error naming the file", name, c, err)
		}
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "garbage"), link)
	if _, err := Load(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink: %v", err)
	}
}

func TestReadRingID(t *testing.T) {
	dir := ringtest.Dir(t)
	if _, err := ReadRingID(dir); !errors.Is(err, ErrNoID) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no ring: %v", err)
	}
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if id, err := ReadRingID(dir); err != nil || id != w.ID() {
		t.Fatalf("ReadRingID = %q, %v; want %q", id, err, w.ID())
	}
	// Hostile identity files.
	other := t.TempDir()
	idPath := filepath.Join(other, "id")
	os.WriteFile(idPath, []byte(strings.Repeat("a", 10<<20)), 0o600)
	if _, err := ReadRingID(other); err == nil || !strings.Contains(err.Error(), idPath) {
		t.Fatalf("huge id: %v", err)
	}
	os.Remove(idPath)
	os.Symlink(filepath.Join(dir, "id"), idPath)
	if _, err := ReadRingID(other); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlinked id: %v", err)
	}
	os.Remove(idPath)
	syscall.Mkfifo(idPath, 0o600)
	if _, err := ReadRingID(other); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO id: %v", err)
	}
}

// collect reads n items from f.
func collect(t *testing.T, f *Follower, n int) []Item {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Item
	for len(out) < n && f.Next(ctx) {
		it := f.Item()
		it.Data = append([]byte(nil), it.Data...)
		out = append(out, it)
	}
	if len(out) < n {
		t.Fatalf("%d items of %d: %v", len(out), n, f.Err())
	}
	return out
}

func appendN(t *testing.T, w *publish.Writer, n int) {
	t.Helper()
	for range n {
		if _, err := w.Append([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFollow_Resume(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendN(t, w, 100)
	id := w.ID()

	// The same ring, further on.
	f, _ := Follow(dir, Cursor{Ring: id, Seq: 90}, Options{})
	items := collect(t, f, 10)
	if items[0].Seq != 91 || items[9].Seq != 100 || items[0].NewRing || items[0].Ring != id || items[0].Kind != Record {
		t.Fatalf("items %+v", items)
	}
	if f.Position() != (Cursor{Ring: id, Seq: 100}) {
		t.Fatalf("position %v", f.Position())
	}
	f.Close()

	// The same ring, with records overwritten since: a Gap first.
	appendN(t, w, 1000)
	first := firstRetained(t, dir)
	f, _ = Follow(dir, Cursor{Ring: id, Seq: 100}, Options{})
	items = collect(t, f, 2)
	if items[0].Kind != Gap || items[0].Seq != 101 || items[0].To != first-1 || items[1].Seq != first {
		t.Fatalf("items %+v, first retained %d", items, first)
	}
	f.Close()

	// Another ring: from its first record, with a Gap from 1.
	f, _ = Follow(dir, Cursor{Ring: id1, Seq: 5000}, Options{})
	items = collect(t, f, 2)
	if items[0].Kind != Gap || items[0].Seq != 1 || items[0].To != first-1 || !items[0].NewRing || items[1].NewRing || items[1].Seq != first {
		t.Fatalf("items %+v", items)
	}
	f.Close()

	// No position: the selection.
	f, _ = Follow(dir, Cursor{}, Options{First: watch.Selection{Last: 3}})
	items = collect(t, f, 3)
	if items[0].Kind != Record || items[0].Seq != w.NextSeq()-3 || items[0].NewRing {
		t.Fatalf("items %+v", items)
	}
	f.Close()
}

func firstRetained(t *testing.T, dir string) uint64 {
	t.Helper()
	r, err := watch.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Snapshot(watch.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Next() {
		t.Fatal("no records")
	}
	return s.Record().Seq
}

func TestFollow_RingCreatedAnewWhileFollowing(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 10)
	old := w.ID()
	f, _ := Follow(dir, Cursor{}, Options{})
	defer f.Close()
	items := collect(t, f, 10)
	if items[9].Seq != 10 || items[9].Ring != old {
		t.Fatalf("items %+v", items)
	}
	w.Close()
	os.RemoveAll(dir)
	w, err = publish.Open(dir, publish.Options{SegmentSize: 4096, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendN(t, w, 5)
	items = collect(t, f, 5)
	if !items[0].NewRing || items[0].Ring != w.ID() || items[0].Seq != 1 || items[4].Seq != 5 {
		t.Fatalf("items %+v", items)
	}
}

func TestFollow_NoRingYet(t *testing.T) {
	dir := ringtest.Dir(t)
	var logs []string
	f, _ := Follow(dir, Cursor{}, Options{Logf: func(format string, args ...any) { logs = append(logs, format) }})
	defer f.Close()
	done := make(chan []Item)
	go func() { done <- collect(t, f, 3) }()
	time.Sleep(200 * time.Millisecond)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendN(t, w, 3)
	items := <-done
	if items[0].Seq != 1 || items[2].Seq != 3 || items[0].NewRing {
		t.Fatalf("items %+v", items)
	}
	if len(logs) != 1 {
		t.Fatalf("logs %q", logs)
	}
}

// TestFollow_GapWhileWaiting checks that a gap learnt while no record follows it is
// delivered at once, not with the next record.
func TestFollow_GapWhileWaiting(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096, Segments: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	appendN(t, w, 1000)
	w.Close() // seals the hot segment
	// A taker takes every segment: the ring holds no record, and its manifest says the
	// next is 1001.
	r, err := watch.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tk := r.Taker()
	defer tk.Close()
	for {
		s, err := tk.Take()
		if errors.Is(err, watch.ErrNothingToTake) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Done(); err != nil {
			t.Fatal(err)
		}
	}
	f, _ := Follow(dir, Cursor{Ring: w.ID(), Seq: 5}, Options{})
	defer f.Close()
	items := collect(t, f, 1)
	if items[0].Kind != Gap || items[0].Seq != 6 || items[0].To != 1000 {
		t.Fatalf("items %+v", items)
	}
}
