package publish

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// inotifyWatch watches dir for IN_MODIFY, the event the wake-up writes raise.
type inotifyWatch struct{ fd int }

func watchModify(t *testing.T, dir string) *inotifyWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY); err != nil {
		t.Fatal(err)
	}
	return &inotifyWatch{fd}
}

// events returns how many IN_MODIFY events for name arrive within d (it returns at the
// first batch when first is set).
func (iw *inotifyWatch) events(t *testing.T, name string, d time.Duration, first bool) int {
	t.Helper()
	deadline := time.Now().Add(d)
	n := 0
	buf := make([]byte, 64<<10)
	for {
		left := time.Until(deadline)
		if left <= 0 || (first && n > 0) {
			return n
		}
		fds := []unix.PollFd{{Fd: int32(iw.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		m, err := unix.Read(iw.fd, buf)
		if err == unix.EAGAIN {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= m; {
			ev := (*unix.InotifyEvent)(unsafePointer(buf[off:]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			if ev.Mask&unix.IN_MODIFY != 0 && unix.ByteSliceToString(nameBytes) == name {
				n++
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// committedOnDisk reads the hot segment's committed word with pread, as a reader
// without a mapping would.
func committedOnDisk(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], segment.OffCommitted); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// TestWakeUps checks the wake-up writes that docs/FORMAT.md promises inotify followers:
// a record after a pause raises IN_MODIFY for the hot segment at once, a burst raises far
// fewer events than it has records, and after the last record of a burst the committed
// word in the file (as pread sees it) covers every record.
func TestWakeUps(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	iw := watchModify(t, dir)
	hot := segment.Name(1)
	path := filepath.Join(dir, hot)

	for i := 0; i < 5; i++ {
		time.Sleep(2 * wakeQuiet)
		if _, err := w.Append([]byte("after a pause")); err != nil {
			t.Fatal(err)
		}
		if n := iw.events(t, hot, 5*time.Second, true); n == 0 {
			t.Fatalf("record %d, after a pause: no IN_MODIFY for %s", i+1, hot)
		}
		want := uint64(segment.HeaderSize + (i+1)*segment.RecordSpan(len("after a pause")))
		if got := committedOnDisk(t, path); got != want {
			t.Fatalf("record %d: committed word on disk %d, want %d", i+1, got, want)
		}
	}

	const burst = 20000
	p := make([]byte, 64)
	for i := 0; i < burst; i++ {
		if _, err := w.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(segment.HeaderSize + 5*segment.RecordSpan(len("after a pause")) + burst*segment.RecordSpan(64))
	deadline := time.Now().Add(5 * time.Second)
	for committedOnDisk(t, path) != want {
		if time.Now().After(deadline) {
			t.Fatalf("after a burst: committed word on disk %d, want %d", committedOnDisk(t, path), want)
		}
		time.Sleep(time.Millisecond)
	}
	events := iw.events(t, hot, 50*time.Millisecond, false)
	if events == 0 || events > burst/10 {
		t.Fatalf("a burst of %d records raised %d IN_MODIFY events", burst, events)
	}
	t.Logf("a burst of %d records raised %d IN_MODIFY events", burst, events)
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
