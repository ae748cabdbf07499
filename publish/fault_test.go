package publish

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
)

// errInjected is the error the faulty file system returns.
var errInjected = errors.New("injected I/O error")

// faultFS fails the nth call (counting from 1) of one operation, once or from then on,
// in the manner of SQLite's I/O error tests.
type faultFS struct {
	fileSystem
	op        string
	n         int
	permanent bool
	errno     error // returned instead of errInjected when set

	mu     sync.Mutex
	calls  int
	failed int
}

func (f *faultFS) fail(op string) error {
	if op != f.op {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.n || (f.permanent && f.calls > f.n) {
		f.failed++
		if f.errno != nil {
			return f.errno
		}
		return errInjected
	}
	return nil
}

func (f *faultFS) create(name string, perm os.FileMode) (*os.File, error) {
	if err := f.fail("create"); err != nil {
		return nil, err
	}
	return f.fileSystem.create(name, perm)
}

func (f *faultFS) allocate(file *os.File, size int64) error {
	if err := f.fail("allocate"); err != nil {
		return err
	}
	return f.fileSystem.allocate(file, size)
}

func (f *faultFS) rename(o, n string) error {
	if err := f.fail("rename"); err != nil {
		return err
	}
	return f.fileSystem.rename(o, n)
}

func (f *faultFS) remove(name string) error {
	if err := f.fail("remove"); err != nil {
		return err
	}
	return f.fileSystem.remove(name)
}

func (f *faultFS) replace(name string, data []byte, perm os.FileMode) error {
	if err := f.fail("replace"); err != nil {
		return err
	}
	return f.fileSystem.replace(name, data, perm)
}

// TestFaults fails every kind of file operation at many points, once and permanently,
// while records are appended across many rolls. Whatever happens, each record whose
// Append succeeded is readable afterwards, in order, and a writer whose fault was
// transient goes on appending.
func TestFaults(t *testing.T) {
	ops := []string{"create", "allocate", "rename", "remove", "replace"}
	var runs, injected int
	for _, op := range ops {
		for n := 1; n <= 12; n++ {
			for _, permanent := range []bool{false, true} {
				name := fmt.Sprintf("%s/%d/permanent=%v", op, n, permanent)
				t.Run(name, func(t *testing.T) {
					ffs := &faultFS{op: op, n: n, permanent: permanent}
					dir := ringtest.Dir(t)
					w, err := openFS(dir, Options{SegmentSize: 4096, Segments: 1000}, func(fs fileSystem) fileSystem {
						ffs.fileSystem = fs
						return ffs
					})
					if err != nil {
						// The fault hit opening the ring: nothing was committed.
						if !errors.Is(err, errInjected) {
							t.Fatalf("Open: %v", err)
						}
						return
					}
					committed := map[uint64]string{}
					var failures, afterFailure int
					for i := 0; i < 1500; i++ {
						p := fmt.Sprintf("record %d", i)
						seq, err := w.Append([]byte(p))
						if err != nil {
							if !errors.Is(err, errInjected) {
								t.Fatalf("Append %d: unexpected error %v", i, err)
							}
							failures++
							continue
						}
						if failures > 0 {
							afterFailure++
						}
						committed[seq] = p
					}
					w.Close()
					ffs.mu.Lock()
					runs++
					injected += ffs.failed
					ffs.mu.Unlock()
					if !permanent && failures > 0 && afterFailure == 0 {
						t.Fatalf("writer never recovered from a single %s fault", op)
					}
					// Reopen without faults, keeping as many segments: everything
					// committed is there.
					w, err = Open(dir, Options{Segments: 1000})
					if err != nil {
						t.Fatalf("reopen after faults: %v", err)
					}
					w.Close()
					_, seqs, data := readAll(t, dir)
					got := map[uint64]string{}
					for i, s := range seqs {
						if i > 0 && s <= seqs[i-1] {
							t.Fatalf("sequence %d after %d", s, seqs[i-1])
						}
						got[s] = data[i]
					}
					for seq, p := range committed {
						if got[seq] != p {
							t.Fatalf("record %d (%q) committed but reads %q after a %s fault; read %d records %v..%v, committed %d", seq, p, got[seq], op, len(seqs), seqs[0], seqs[len(seqs)-1], len(committed))
						}
					}
				})
			}
		}
	}
	t.Logf("%d runs, %d faults injected", runs, injected)
}

// smallFS is a file system with room for a fixed number of segment files: allocating
// one more fails with ENOSPC, as on a full tmpfs, until one is removed.
type smallFS struct {
	fileSystem
	room int

	mu        sync.Mutex
	allocated map[string]bool // names of files holding an allocated segment
}

func (f *smallFS) allocate(file *os.File, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.allocated) >= f.room {
		return &os.PathError{Op: "allocate", Path: file.Name(), Err: unix.ENOSPC}
	}
	if err := f.fileSystem.allocate(file, size); err != nil {
		return err
	}
	f.allocated[filepath.Base(file.Name())] = true
	return nil
}

func (f *smallFS) rename(o, n string) error {
	if err := f.fileSystem.rename(o, n); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.allocated[o] {
		delete(f.allocated, o)
		f.allocated[n] = true
	}
	return nil
}

func (f *smallFS) remove(name string) error {
	f.mu.Lock()
	delete(f.allocated, name)
	f.mu.Unlock()
	return f.fileSystem.remove(name)
}

// TestFaults_NoSpace runs a writer on a file system with room for 5 segments while it
// asks to retain 100: on ENOSPC it gives back its spare segment, then drops the oldest
// sealed segments, counts and logs the loss, and goes on.
func TestFaults_NoSpace(t *testing.T) {
	fs := &smallFS{room: 5, allocated: map[string]bool{}}
	dir := ringtest.Dir(t)
	var mu sync.Mutex
	var logged []string
	w, err := openFS(dir, Options{SegmentSize: 4096, Segments: 100, Logf: func(f string, a ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, a...))
		mu.Unlock()
	}}, func(real fileSystem) fileSystem { fs.fileSystem = real; return fs })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := w.Append([]byte(fmt.Sprintf("record %d", i))); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	lost := w.Lost()
	w.Close()
	if lost == 0 || len(logged) == 0 {
		t.Fatalf("no loss counted (%d) or logged (%v) after ENOSPC", lost, logged)
	}
	m, seqs, _ := readAll(t, dir)
	if len(m.Segments) > 5 || seqs[0] != lost+1 || seqs[len(seqs)-1] != 1000 {
		t.Fatalf("ring holds %d segments, records %d..%d, lost %d", len(m.Segments), seqs[0], seqs[len(seqs)-1], lost)
	}
}
