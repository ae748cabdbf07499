// Package ringtest helps tests make ring directories: fresh ones on tmpfs, rings written
// by hand byte for byte, small tmpfs mounts and file systems filled up.
package ringtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Dir returns the path of a ring directory that does not exist yet, inside a fresh
// directory on tmpfs (/dev/shm) when there is one, removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	d, err := os.MkdirTemp(base, "filering-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "ring")
}

// Seg is a segment a test writes by hand, byte for byte as docs/FORMAT.md says, for what
// no producer writes: damage, negative times, manifests listing segments that are gone,
// the manifests of older producers. It holds N records from sequence First, each holding
// its sequence number in decimal, with times from At (nil: the sequence number in
// microseconds).
type Seg struct {
	Num, First uint64
	N          int
	Sealed     bool
	At         func(seq uint64) int64
}

// Bytes returns the segment's file, size bytes long.
func (h Seg) Bytes(size int64) []byte {
	b := make([]byte, size)
	segment.PutHeader(b, segment.Header{Size: size, Number: h.Num, FirstSeq: h.First, Created: 1})
	off := segment.HeaderSize
	for seq := h.First; seq < h.First+uint64(h.N); seq++ {
		t := int64(seq) * 1000
		if h.At != nil {
			t = h.At(seq)
		}
		off = segment.PutRecord(b, off, seq, t, []byte(fmt.Sprint(seq)))
	}
	if h.Sealed {
		segment.Seal(b, int64(off))
	} else {
		segment.SetCommitted(b, int64(off))
	}
	return b
}

// Entry returns the segment's manifest entry.
func (h Seg) Entry() segment.Entry {
	e := segment.Entry{Name: segment.Name(h.Num), FirstSeq: h.First, Sealed: h.Sealed}
	if h.Sealed {
		e.LastSeq = h.First + uint64(h.N) - 1
	}
	return e
}

// WriteRing writes segs, size bytes each, into dir (made if needed) and a manifest with
// generation gen listing them.
func WriteRing(t testing.TB, dir string, size int64, gen uint64, segs ...Seg) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m := &segment.Manifest{Version: segment.Version, SegmentSize: size, SegmentsMax: max(8, len(segs)), Generation: gen,
		Segments: []segment.Entry{}}
	for _, h := range segs {
		if err := os.WriteFile(filepath.Join(dir, segment.Name(h.Num)), h.Bytes(size), 0o640); err != nil {
			t.Fatal(err)
		}
		m.Segments = append(m.Segments, h.Entry())
	}
	PutManifest(t, dir, m)
}

// PutManifest replaces dir's manifest with m atomically, as a producer does.
func PutManifest(t testing.TB, dir string, m *segment.Manifest) {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".manifest.tmp")
	if err := os.WriteFile(tmp, m.Encode(), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, segment.ManifestName)); err != nil {
		t.Fatal(err)
	}
}

// Tmpfs mounts a tmpfs of the given size (as mount's size= option) for the test, or
// skips when not root unless FILERING_REQUIRE_ROOT=1 makes that a failure.
func Tmpfs(t testing.TB, size string) string {
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

// Fill takes every free byte of the file system holding dir with a file of its own, as
// another program filling a shared tmpfs does, and returns its path.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for chunk := int64(1 << 20); chunk >= 4096; {
		if err := unix.Fallocate(int(f.Fd()), 0, off, chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			chunk /= 2
			continue
		}
		off += chunk
	}
	return path
}
