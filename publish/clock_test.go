package publish

import (
	"testing"
	"time"
)

// TestClock checks that the clock keeps to the wall clock: every reading lies between
// time.Now before and after it, across several resynchronisations.
func TestClock(t *testing.T) {
	var c clock
	deadline := time.Now().Add(3 * clockResync)
	prev := int64(0)
	for n := 0; time.Now().Before(deadline); n++ {
		before := time.Now().UnixNano()
		got := c.now()
		after := time.Now().UnixNano()
		// The monotonic and wall clocks may run apart by the NTP slew rate, at most
		// 500 ppm: allow that much of a resynchronisation period.
		slack := int64(clockResync) / 2000
		if got < before-slack || got > after+slack {
			t.Fatalf("reading %d: %d, outside [%d, %d]", n, got, before, after)
		}
		if got < prev-slack {
			t.Fatalf("reading %d: %d went back from %d", n, got, prev)
		}
		prev = got
		if n%1000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
