package publish

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// smallTmpfs mounts a tmpfs of the given size for the test, or skips when not root
// (unless FILERING_REQUIRE_ROOT=1, which makes that a failure).
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
			t.Fatal("this test mounts a tmpfs and needs root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestFullTmpfs runs a producer on a real tmpfs too small for the ring it asks for: it
// drops the oldest sealed segments to make room, counts them as lost, and goes on. It
// runs with small segments and with 2 MiB ones, which the producer builds on huge pages
// where it can.
func TestFullTmpfs(t *testing.T) {
	for _, c := range []struct {
		tmpfs   string
		segment int64
		records int
	}{
		{"128k", 16 << 10, 20000},
		{"9m", 2 << 20, 400000},
	} {
		t.Run(c.tmpfs, func(t *testing.T) {
			dir := smallTmpfs(t, c.tmpfs) + "/ring"
			var notes []string
			w, err := Open(dir, Options{SegmentSize: c.segment, Segments: 64,
				Logf: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }})
			if err != nil {
				t.Fatal(err)
			}
			n := uint64(c.records)
			for i := uint64(1); i <= n; i++ {
				if _, err := w.Append([]byte(fmt.Sprintf("%08d", i))); err != nil {
					t.Fatalf("Append %d: %v", i, err)
				}
			}
			lost := w.Lost()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if lost == 0 || len(notes) == 0 {
				t.Fatalf("a %s tmpfs held %d records without dropping any", c.tmpfs, n)
			}
			_, seqs, data := readAll(t, dir)
			if seqs[0] != lost+1 || seqs[len(seqs)-1] != n || uint64(len(seqs)) != n-lost {
				t.Fatalf("ring holds %d records %d..%d with %d reported lost", len(seqs), seqs[0], seqs[len(seqs)-1], lost)
			}
			for i, s := range seqs {
				if data[i] != fmt.Sprintf("%08d", s) {
					t.Fatalf("record %d holds %q", s, data[i])
				}
			}
			t.Logf("%d records through a %s tmpfs, %d dropped to make room (%s)", n, c.tmpfs, lost, notes[0])
		})
	}
}

// TestFullTmpfs_NoRoomForOne checks the clear error when not even one segment fits.
func TestFullTmpfs_NoRoomForOne(t *testing.T) {
	for _, size := range []int64{1 << 20, 2 << 20} {
		dir := smallTmpfs(t, "1m") + "/ring"
		_, err := Open(dir, Options{SegmentSize: size})
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Open with %d-byte segments on a 1 MiB tmpfs: %v", size, err)
		}
		t.Log(err)
	}
}
