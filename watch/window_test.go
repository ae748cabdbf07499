package watch

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// manySegments makes a ring of 300 sealed segments of 4 KiB (about 2,600 records) and
// returns its directory and manifest.
func manySegments(t *testing.T) (string, *segment.Manifest) {
	t.Helper()
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 300}, 0)
	per := (4096 - segment.HeaderSize) / segment.RecordSpan(400)
	p := []byte(strings.Repeat("x", 400))
	for range 299*per + 1 {
		if _, err := w.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, mustManifest(t, dir)
}

func mustManifest(t *testing.T, dir string) *segment.Manifest {
	t.Helper()
	r := openRing(t, dir)
	m, err := r.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// openSegments counts the segment files the process holds open.
func openSegments(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasSuffix(p, ".seg") {
			n++
		}
	}
	return n
}

// TestSnapshot_Windows reads a ring of 300 segments whole: every record comes, in order,
// while the reader never holds more than 64 segment files open (docs/FORMAT.md,
// "Reading: a consistent snapshot", step 2). A segment of a later window removed after
// the snapshot began is skipped without an error, and the records after it still come;
// Stat counts the ring the same way.
func TestSnapshot_Windows(t *testing.T) {
	dir, m := manySegments(t)
	first, last := m.Segments[0].FirstSeq, m.Segments[len(m.Segments)-1].LastSeq
	gone := m.Segments[200] // in the fourth window
	for _, remove := range []bool{false, true} {
		s, err := openRing(t, dir).Snapshot(Selection{})
		if err != nil {
			t.Fatal(err)
		}
		if n := openSegments(t); n > maxOpen {
			t.Fatalf("%d segments open after Snapshot", n)
		}
		if remove {
			if err := os.Remove(filepath.Join(dir, gone.Name)); err != nil {
				t.Fatal(err)
			}
		}
		var got []uint64
		most := 0
		for s.Next() {
			got = append(got, s.Record().Seq)
			if len(got)%7 == 0 {
				most = max(most, openSegments(t))
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("remove=%v: %v", remove, err)
		}
		s.Close()
		var want []uint64
		for seq := first; seq <= last; seq++ {
			if !remove || seq < gone.FirstSeq || seq > gone.LastSeq {
				want = append(want, seq)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("remove=%v: %d records, %v … %v; want %d, %v … %v", remove, len(got), got[:3], got[len(got)-3:], len(want), want[:3], want[len(want)-3:])
		}
		if most > maxOpen {
			t.Fatalf("remove=%v: %d segment files open at once, at most %d allowed", remove, most, maxOpen)
		}
		if n := openSegments(t); n != 0 {
			t.Fatalf("remove=%v: %d segment files left open after Close", remove, n)
		}
	}
	// Last counts newest first, over more than a window, then reads them again; with
	// Since, it counts oldest first, over every window.
	for _, sel := range []Selection{{Last: 2000}, {Since: time.Unix(1, 0), Last: 2000}} {
		s, err := openRing(t, dir).Snapshot(sel)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		most := openSegments(t)
		for s.Next() {
			got = append(got, s.Record().Seq)
			if len(got)%7 == 0 {
				most = max(most, openSegments(t))
			}
		}
		s.Close()
		if most > maxOpen {
			t.Fatalf("%+v: %d segment files open at once", sel, most)
		}
		if s.Err() != nil || len(got) != 2000 || got[0] != last-2000+1-(gone.LastSeq-gone.FirstSeq+1) || got[1999] != last {
			t.Fatalf("%+v: %d records, %v; want 2000 ending at %d", sel, len(got), s.Err(), last)
		}
		if n := openSegments(t); n != 0 {
			t.Fatalf("%+v: %d segment files left open", sel, n)
		}
	}
	st, err := openRing(t, dir).Stat()
	if err != nil || st.Segments != 299 || st.Records != last-first+1-(gone.LastSeq-gone.FirstSeq+1) || len(st.Damage) != 0 {
		t.Fatalf("Stat: %+v, %v", st, err)
	}
}

// TestFollower_Windows follows a ring of 300 segments from its first record: the
// follower's read of what is retained goes by windows too, and a segment of a later
// window removed before the follower reaches it is reported as lost, exactly.
func TestFollower_Windows(t *testing.T) {
	dir, m := manySegments(t)
	gone := m.Segments[150]
	f, err := openRing(t, dir).Follow(Selection{From: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var losses []Loss
	f.OnLoss(func(l Loss) { losses = append(losses, l) })
	want := m.Segments[0].FirstSeq
	for want <= m.Segments[len(m.Segments)-1].LastSeq {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok := f.Next(ctx)
		cancel()
		if !ok {
			t.Fatalf("no record %d: %v", want, f.Err())
		}
		seq := f.Record().Seq
		if seq == 1 {
			if err := os.Remove(filepath.Join(dir, gone.Name)); err != nil {
				t.Fatal(err)
			}
		}
		if seq == gone.FirstSeq {
			t.Fatalf("record %d of the removed segment delivered", seq)
		}
		if seq == gone.LastSeq+1 {
			want = seq
		}
		if seq != want {
			t.Fatalf("record %d, want %d", seq, want)
		}
		want++
		if want%7 == 0 {
			if n := openSegments(t); n > maxOpen+1 {
				t.Fatalf("%d segment files open", n)
			}
		}
	}
	if len(losses) != 1 || losses[0] != (Loss{From: gone.FirstSeq, To: gone.LastSeq}) {
		t.Fatalf("losses %v, want the removed segment's %d to %d", losses, gone.FirstSeq, gone.LastSeq)
	}
}
