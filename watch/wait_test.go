package watch

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
)

// TestWaitAfter_TopOfRange: an after at or above the largest sequence number there can
// be waits for the deadline like any after ahead of the ring, instead of wrapping to 0
// and returning at once.
func TestWaitAfter_TopOfRange(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Append([]byte("x"))
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, after := range []uint64{1<<63 - 1, 1 << 63, math.MaxUint64} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		newest, err := r.WaitAfter(ctx, after, nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitAfter(%d): %d, %v; want the deadline", after, newest, err)
		}
	}
}
