package watch

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// This file writes rings by hand, byte for byte as docs/FORMAT.md says, for tests that
// need what no producer writes: damage, negative times, manifests listing segments that
// are gone, the manifests of older producers.

// handSeg is a segment a test writes by hand: see ringtest.Seg.
type handSeg = ringtest.Seg

// readManifest returns dir's manifest.
func readManifest(t testing.TB, dir string) *segment.Manifest {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// dropEmptyHot does what producers before this round did at a clean stop: it removes
// the last entry of dir's manifest when it is a hot segment holding no record, and its
// file, so that the next producer uses its number again.
func dropEmptyHot(t testing.TB, dir string) {
	t.Helper()
	m := readManifest(t, dir)
	hot, ok := m.Hot()
	if !ok {
		return
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Snapshot(Selection{From: hot.FirstSeq})
	if err != nil {
		t.Fatal(err)
	}
	empty := !s.Next()
	s.Close()
	if !empty {
		return
	}
	m.Segments = m.Segments[:len(m.Segments)-1]
	m.Generation++
	ringtest.PutManifest(t, dir, m)
	if err := os.Remove(filepath.Join(dir, hot.Name)); err != nil {
		t.Fatal(err)
	}
}
