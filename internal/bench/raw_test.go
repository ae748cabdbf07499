package bench

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRaw_peer checks that the raw ring delivers every record, in order, to the reader
// process the benchmark uses, when the ring holds them all.
func TestRaw_peer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a reader process")
	}
	const size, count = 64, 100_000
	b := &bencher{Config: &Config{SegmentSize: 4 << 20, Segments: 2}, dir: benchDir(t)}
	l, err := b.openRaw(size)
	if err != nil {
		t.Fatal(err)
	}
	defer l.cleanup()
	if slots := l.sender.(*rawSender).lay.slots; slots < count+1 {
		t.Fatalf("the ring holds %d records, want at least %d", slots, count+1)
	}
	p, err := b.startPeer(peerConfig{Transport: transRaw, Path: l.path, Size: size, Timeout: time.Minute}, nil)
	if err != nil {
		l.close()
		t.Fatal(err)
	}
	f := newFrame(size)
	for seq := uint64(1); seq <= count; seq++ {
		f.set(seq, 0, phaseMeasured)
		if err := l.send(f); err != nil {
			t.Fatal(err)
		}
	}
	f.set(count+1, 0, phaseEnd)
	if err := l.send(f); err != nil {
		t.Fatal(err)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	// The reader fails (take) on a record out of order or of the wrong size.
	rep, err := p.wait()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Received != count || rep.Lost != 0 || rep.End == 0 {
		t.Fatalf("received %d, lost %d, end %d; want all %d records and the end", rep.Received, rep.Lost, rep.End, count)
	}
}

// TestRaw_overtaken checks that a reader the producer has lapped skips ahead, still in
// order, and that the records it skipped count as lost.
func TestRaw_overtaken(t *testing.T) {
	const size = 64
	lay, err := newRawLayout(size, rawHeader+8*72)
	if err != nil {
		t.Fatal(err)
	}
	if lay.slots != 8 {
		t.Fatalf("%d slots, want 8", lay.slots)
	}
	s, err := createRaw(filepath.Join(t.TempDir(), rawName), size, rawHeader+8*72)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	f := newFrame(size)
	for seq := uint64(1); seq <= 20; seq++ {
		phase := uint64(phaseMeasured)
		if seq == 20 {
			phase = phaseEnd
		}
		f.set(seq, 0, phase)
		if err := s.send(f); err != nil {
			t.Fatal(err)
		}
	}
	tl := &tally{size: size, next: 1}
	if err := readRawRing(t.Context(), s.b, s.lay, tl); err != nil {
		t.Fatal(err)
	}
	// Records 13 to 20 are in the ring; the reader, lapped, skips to a quarter of the
	// ring behind the newest, 15, and reads 15 to 19 and the end.
	if !tl.done || tl.rep.Received != 5 || tl.rep.Lost != 14 {
		t.Fatalf("done %v, received %d, lost %d; want the end, 5 received, 14 lost", tl.done, tl.rep.Received, tl.rep.Lost)
	}
}
