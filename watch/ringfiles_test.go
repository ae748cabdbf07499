package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/filering/filering/segment"
)

// This file writes rings by hand, byte for byte as docs/FORMAT.md says, for tests that
// need what no producer writes: damage, negative times, manifests listing segments that
// are gone, the manifests of older producers.

// handSeg is a segment a test writes by hand: n records from sequence first, each
// holding its sequence number in decimal, with times from at (nil: seq microseconds).
type handSeg struct {
	num, first uint64
	n          int
	sealed     bool
	at         func(seq uint64) int64
}

// bytes returns the segment file of size bytes.
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

// writeHandRing writes the segments segs of size bytes into dir (made if needed) and a
// manifest listing them, with generation gen.
func writeHandRing(t testing.TB, dir string, size int64, gen uint64, segs ...handSeg) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m := &segment.Manifest{Version: segment.Version, SegmentSize: size, SegmentsMax: max(8, len(segs)), Generation: gen,
		Segments: []segment.Entry{}}
	for _, h := range segs {
		if err := os.WriteFile(filepath.Join(dir, segment.Name(h.num)), h.bytes(size), 0o640); err != nil {
			t.Fatal(err)
		}
		m.Segments = append(m.Segments, h.entry())
	}
	writeManifest(t, dir, m)
}

// writeManifest replaces dir's manifest with m, atomically, as a producer does.
func writeManifest(t testing.TB, dir string, m *segment.Manifest) {
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
	writeManifest(t, dir, m)
	if err := os.Remove(filepath.Join(dir, hot.Name)); err != nil {
		t.Fatal(err)
	}
}
