package publish

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// TestWriter_ConcurrentAppends appends from several goroutines at once, with single
// records and batches, into small segments that roll every few dozen records, while
// the background goroutine seals segments by age: every append's sequence numbers hold
// its own payloads, numbers are never used twice, and the ring holds every record.
func TestWriter_ConcurrentAppends(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := Open(dir, Options{SegmentSize: 4096, Segments: segment.MaxSegments, SealAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perG = 4, 3000
	var mu sync.Mutex
	want := map[uint64]string{}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; {
				if i%7 == 0 {
					batch := [][]byte{[]byte(fmt.Sprintf("%d-%d", g, i)), []byte(fmt.Sprintf("%d-%d", g, i+1))}
					first, n, err := w.AppendBatch(batch)
					if err != nil || n != 2 {
						t.Errorf("AppendBatch: %d, %v", n, err)
						return
					}
					mu.Lock()
					want[first], want[first+1] = string(batch[0]), string(batch[1])
					mu.Unlock()
					i += 2
					continue
				}
				p := fmt.Sprintf("%d-%d", g, i)
				seq, err := w.Append([]byte(p))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				if old, dup := want[seq]; dup {
					t.Errorf("seq %d returned for %q and %q", seq, old, p)
				}
				want[seq] = p
				mu.Unlock()
				i++
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, seqs, data := readAll(t, dir)
	if len(seqs) != len(want) {
		t.Fatalf("ring holds %d records, %d were appended", len(seqs), len(want))
	}
	for i, s := range seqs {
		if s != uint64(i)+1 || data[i] != want[s] {
			t.Fatalf("record %d: seq %d holds %q, want seq %d holding %q", i, s, data[i], i+1, want[uint64(i)+1])
		}
	}
}

// TestWriter_CloseDuringAppends closes the writer while goroutines append into segments
// that roll all the time: appends fail with ErrClosed or succeed, and every record
// whose append succeeded is in the ring.
func TestWriter_CloseDuringAppends(t *testing.T) {
	for round := 0; round < 20; round++ {
		dir := ringtest.Dir(t)
		w, err := Open(dir, Options{SegmentSize: 4096, Segments: segment.MaxSegments})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		want := map[uint64]string{}
		var wg sync.WaitGroup
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					p := fmt.Sprintf("%d-%d", g, i)
					seq, err := w.Append([]byte(p))
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					mu.Lock()
					want[seq] = p
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		_, seqs, data := readAll(t, dir)
		got := map[uint64]string{}
		for i, s := range seqs {
			got[s] = data[i]
		}
		for s, p := range want {
			if got[s] != p {
				t.Fatalf("round %d: record %d (%q) appended but reads %q", round, s, p, got[s])
			}
		}
	}
}
