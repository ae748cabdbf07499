package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// This file writes rings by hand, byte for byte as docs/FORMAT.md says, for tests that
// need what no producer writes: damage, hostile files, negative times, manifests that
// list thousands of segments whose files are gone, the manifests of older producers.

// handSeg is a segment a test writes by hand: see ringtest.Seg.
type handSeg = ringtest.Seg

// loadManifest reads and validates dir's manifest.
func loadManifest(t *testing.T, dir string) *segment.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, segment.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := segment.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
