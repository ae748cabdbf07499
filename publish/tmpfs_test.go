package publish

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// smallTmpfs mounts a tmpfs of the given size for the test: see ringtest.Tmpfs.
func smallTmpfs(t *testing.T, size string) string { return ringtest.Tmpfs(t, size) }

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

// TestFullTmpfs_FilledByAnother fills the tmpfs under a running producer with another
// file, as happens on a board whose /run fills up: the producer drops its oldest sealed
// segments to make room for new ones and for its manifest, reports each loss exactly,
// refuses only the records it has no room for at all (ErrNoSpace, the writer stays
// usable), and goes back to normal once the other file is gone.
func TestFullTmpfs_FilledByAnother(t *testing.T) {
	for _, c := range []struct {
		tmpfs   string
		segment int64
	}{
		{"6m", 2 << 20},
		{"96k", 16 << 10},
	} {
		t.Run(c.tmpfs, func(t *testing.T) {
			mnt := smallTmpfs(t, c.tmpfs)
			dir := mnt + "/ring"
			var notes []string
			w, err := Open(dir, Options{SegmentSize: c.segment, Logf: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }})
			if err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, 200)
			perSegment := int(c.segment) / segment.RecordSpan(len(payload))
			refused := 0
			var lastRefusal error
			appendN := func(n int) {
				for i := 0; i < n; i++ {
					_, err := w.Append(payload)
					switch {
					case errors.Is(err, ErrNoSpace):
						refused++
						lastRefusal = err
					case err != nil:
						t.Fatalf("Append: %v", err)
					}
				}
			}
			appendN(2 * perSegment) // two segments sealed or nearly
			filler := ringtest.Fill(t, mnt)
			appendN(6 * perSegment) // several rolls on a full file system
			if w.Lost() == 0 {
				t.Fatalf("no segment dropped on a full file system; notes %q", notes)
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			before := w.NextSeq()
			appendN(3 * perSegment)
			if got := w.NextSeq() - before; got != uint64(3*perSegment) {
				t.Fatalf("after the room came back, %d of %d records appended (%v)", got, 3*perSegment, lastRefusal)
			}
			lost := w.Lost()
			next := w.NextSeq()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			m, seqs, _ := readAll(t, dir)
			if len(seqs) == 0 || seqs[0] != lost+1 || seqs[len(seqs)-1] != next-1 || uint64(len(seqs)) != next-1-lost {
				t.Fatalf("ring holds %d records %v..%v with %d reported lost, next %d", len(seqs), seqs[0], seqs[len(seqs)-1], lost, next)
			}
			if len(m.Segments) < 2 {
				t.Fatalf("ring did not grow back after the room came back: %d segments", len(m.Segments))
			}
			t.Logf("%d records appended, %d refused with ErrNoSpace, %d dropped to make room; %d notes, first %q",
				next-1, refused, lost, len(notes), notes[0])
		})
	}
}

// TestFullTmpfs_NothingToDrop fills the file system while the ring holds only its hot
// segment: once that is full, appends fail with ErrNoSpace and change nothing, and the
// writer goes on as soon as there is room again, with no sequence number skipped.
func TestFullTmpfs_NothingToDrop(t *testing.T) {
	mnt := smallTmpfs(t, "1m")
	dir := mnt + "/ring"
	w, err := Open(dir, Options{SegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// No segment prepared ahead of need, and none to be: then nothing but the hot
	// segment can give room, whenever the preparer would have run.
	w.mu.Lock()
	w.tight.Store(true)
	for w.preparing.Load() != 0 {
		w.cond.Wait()
	}
	if w.spare != nil {
		w.discard(w.spare)
		w.spare = nil
	}
	w.mu.Unlock()
	filler := ringtest.Fill(t, mnt)
	payload := make([]byte, 200)
	perSegment := (16 << 10) / segment.RecordSpan(len(payload))
	refused := 0
	for i := 0; i < 2*perSegment; i++ {
		if _, err := w.Append(payload); errors.Is(err, ErrNoSpace) {
			refused++
		} else if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if refused == 0 {
		t.Fatal("a full file system took two segments' worth of records")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2*perSegment; i++ {
		if _, err := w.Append(payload); err != nil {
			t.Fatalf("Append with room again: %v", err)
		}
	}
	next, lost := w.NextSeq(), w.Lost()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, seqs, _ := readAll(t, dir)
	if uint64(len(seqs)) != next-1-lost || seqs[0] != lost+1 || seqs[len(seqs)-1] != next-1 {
		t.Fatalf("ring holds %d records %d..%d, want %d..%d", len(seqs), seqs[0], seqs[len(seqs)-1], lost+1, next-1)
	}
	t.Logf("%d records refused while full, %d appended, %d dropped", refused, next-1, lost)
}
