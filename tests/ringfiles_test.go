package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/filering/filering/segment"
)

// This file writes rings by hand, byte for byte as docs/FORMAT.md says, for tests that
// need what no producer writes: damage, hostile files, negative times, manifests that
// list thousands of segments whose files are gone, the manifests of older producers.

// handSeg is a segment a test writes by hand: n records from sequence first, each holding
// its sequence number in decimal, with times from at (nil: seq microseconds).
type handSeg struct {
	num, first uint64
	n          int
	sealed     bool
	at         func(seq uint64) int64
}

// bytes returns the segment's file, size bytes long.
func (h handSeg) bytes(size int64) []byte {
	b := make([]byte, size)
	segment.PutHeader(b, segment.Header{Size: size, Number: h.num, FirstSeq: h.first, Created: 1})
	off := segment.HeaderSize
	for seq := h.first; seq < h.first+uint64(h.n); seq++ {
		t := int64(seq) * 1000
		if h.at != nil {
			t = h.at(seq)
		}
		off = segment.PutRecord(b, off, seq, t, []byte(fmt.Sprint(seq)))
	}
	if h.sealed {
		segment.Seal(b, int64(off))
	} else {
		segment.SetCommitted(b, int64(off))
	}
	return b
}

// entry returns the segment's manifest entry.
func (h handSeg) entry() segment.Entry {
	e := segment.Entry{Name: segment.Name(h.num), FirstSeq: h.first, Sealed: h.sealed}
	if h.sealed {
		e.LastSeq = h.first + uint64(h.n) - 1
	}
	return e
}

// writeHandRing writes segs, size bytes each, into dir (made if needed) and a manifest
// listing them.
func writeHandRing(t *testing.T, dir string, size int64, segs ...handSeg) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m := &segment.Manifest{Version: segment.Version, SegmentSize: size, SegmentsMax: max(8, len(segs)), Generation: 1,
		Segments: []segment.Entry{}}
	for _, h := range segs {
		if err := os.WriteFile(filepath.Join(dir, segment.Name(h.num)), h.bytes(size), 0o640); err != nil {
			t.Fatal(err)
		}
		m.Segments = append(m.Segments, h.entry())
	}
	putManifest(t, dir, m)
}

// putManifest replaces dir's manifest with m atomically, as a producer does.
func putManifest(t *testing.T, dir string, m *segment.Manifest) {
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
