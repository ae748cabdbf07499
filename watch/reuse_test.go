package watch

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// reuseRing writes a ring of three sealed segments of 10 records each and a hot one.
func reuseRing(t *testing.T) string {
	dir := ringtest.Dir(t)
	ringtest.WriteRing(t, dir, 4096, 5,
		handSeg{Num: 1, First: 1, N: 10, Sealed: true},
		handSeg{Num: 2, First: 11, N: 10, Sealed: true},
		handSeg{Num: 3, First: 21, N: 10, Sealed: true},
		handSeg{Num: 4, First: 31, N: 10})
	return dir
}

// TestOpen_LeasedSegmentIsMissing holds a write lease on a listed segment, as a producer
// does while it reuses the file of a removed segment (docs/FORMAT.md, "Reusing a segment
// file"): every reader's open fails with EAGAIN, and the segment is missing, not damaged.
func TestOpen_LeasedSegmentIsMissing(t *testing.T) {
	dir := reuseRing(t)
	f, err := os.OpenFile(filepath.Join(dir, segment.Name(2)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETSIG, int(unix.SIGURG)); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		t.Skipf("no write lease here: %v", err)
	}
	r := openRing(t, dir)
	want := append(span(1, 10), span(21, 40)...)
	if got := collect(t, r, Selection{}); !equal(got, want) {
		t.Fatalf("snapshot: %v, want %v", got, want)
	}
	if got := collect(t, r, Selection{From: 5}); !equal(got, want[4:]) {
		t.Fatalf("from 5: %v", got)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r, Selection{}); !equal(got, span(1, 40)) {
		t.Fatalf("after the lease: %v", got)
	}
}

// TestOpen_ReusedAfterLookup gives a reader, between its open of a listed segment and
// the check of its header, what a reader that looked a name up just before the producer
// removed the segment and reused its file gets: another segment's header. When the name
// is gone or names another file, the segment is missing; when the name still names the
// file, it is damaged, as before.
func TestOpen_ReusedAfterLookup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		move    bool // the name no longer names the file
		replace bool // another file takes the name
		damaged bool
	}{
		{name: "name gone", move: true},
		{name: "name names another file", move: true, replace: true},
		{name: "name still names it", damaged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := reuseRing(t)
			target := filepath.Join(dir, segment.Name(2))
			testHookOpened = func(path string) {
				if path != target {
					return
				}
				// Segment 9's header, as a reused file has it once renamed to 9.seg.
				b := handSeg{Num: 9, First: 91, N: 0}.Bytes(4096)
				if err := os.WriteFile(path, b, 0o640); err != nil {
					t.Fatal(err)
				}
				if tc.move {
					if err := os.Rename(path, filepath.Join(dir, ".reused")); err != nil {
						t.Fatal(err)
					}
				}
				if tc.replace {
					if err := os.WriteFile(path, handSeg{Num: 2, First: 11, N: 10, Sealed: true}.Bytes(4096), 0o640); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer func() { testHookOpened = nil }()
			r := openRing(t, dir)
			s, err := r.Snapshot(Selection{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []uint64
			var damage []error
			for {
				for s.Next() {
					got = append(got, s.Record().Seq)
				}
				if s.Err() == nil {
					break
				}
				damage = append(damage, s.Err())
				if !s.SkipDamaged() {
					break
				}
			}
			want := append(span(1, 10), span(21, 40)...)
			if !equal(got, want) {
				t.Fatalf("records %v, want %v", got, want)
			}
			if tc.damaged != (len(damage) == 1) || len(damage) > 1 {
				t.Fatalf("damage %v, want damage %v", damage, tc.damaged)
			}
		})
	}
}
