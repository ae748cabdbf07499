package publish

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
)

// fullFS fails every allocation with ENOSPC while full is set, as a full tmpfs does.
type fullFS struct {
	fileSystem
	full atomic.Bool
}

func (f *fullFS) allocate(file *os.File, size int64) error {
	if f.full.Load() {
		return &os.PathError{Op: "allocate", Path: file.Name(), Err: unix.ENOSPC}
	}
	return f.fileSystem.allocate(file, size)
}

// noteLog collects what a Writer or a Sink says through its Logf. Safe for concurrent use.
type noteLog struct {
	mu   sync.Mutex
	said []string
}

func (n *noteLog) logf(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.said = append(n.said, fmt.Sprintf(format, args...))
}

// all returns what was said so far.
func (n *noteLog) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.said...)
}

// TestSink_NoSpace: while the file system is full, a Sink drops what it cannot append
// instead of failing, says so once, and when there is room again says exactly how many
// records it dropped, and from which sequence number it appends.
func TestSink_NoSpace(t *testing.T) {
	// The fake file system refuses every allocation, and a reused file needs none: a
	// writer that reuses files may go on in its ring's own files
	// (TestReuse_FullFileSystem), which is not what this test is about.
	defer func(v bool) { noReuse = v }(noReuse)
	noReuse = true
	fs := &fullFS{}
	dir := ringtest.Dir(t)
	var said noteLog
	w, err := openFS(dir, Options{SegmentSize: 4096, Segments: 2}, func(real fileSystem) fileSystem { fs.fileSystem = real; return fs })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := NewSink(w, said.logf)
	fs.full.Store(true)
	rec := [][]byte{[]byte(strings.Repeat("x", 100))}
	appended := 0
	for s.Dropped() < 10 {
		if err := s.AppendBatch(rec); err != nil {
			t.Fatalf("AppendBatch with the file system full: %v", err)
		}
		if s.Dropped() == 0 {
			if appended++; appended > 1000 {
				t.Fatal("1000 records appended to a full file system")
			}
		}
	}
	next := w.NextSeq()
	notes := said.all()
	if len(notes) != 1 || !strings.Contains(notes[0], "dropping records read until there is room") {
		t.Fatalf("notes while full: %q; want one saying records are dropped", notes)
	}
	fs.full.Store(false)
	if err := s.AppendBatch(rec); err != nil {
		t.Fatal(err)
	}
	notes = said.all()
	want := fmt.Sprintf("room again: appending from sequence %d on; 10 records read meanwhile were dropped", next)
	if len(notes) != 2 || !strings.Contains(notes[1], want) || s.Dropped() != 0 {
		t.Fatalf("notes: %q, dropped %d; want %q and nothing dropped", notes, s.Dropped(), want)
	}
}
