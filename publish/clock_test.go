package publish

import (
	"runtime"
	"testing"
	"time"
)

// TestClock checks that the clock keeps to the wall clock: every reading lies between
// time.Now before and after it, across several resynchronisations, through the CPU's
// counter where this machine's kernel keeps time with it.
func TestClock(t *testing.T) {
	var c clock
	defer func() {
		switch {
		case c.mult != 0:
			t.Logf("through the %s counter: %.4f ns per tick", tickSource, float64(c.mult)/(1<<32))
		case haveTicks():
			t.Errorf("the %s counter is there but its rate was never measured", tickSource)
		default:
			t.Logf("no counter the kernel keeps time with (want clock source %q): the monotonic clock only", tickSource)
		}
	}()
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

func BenchmarkClock(b *testing.B) {
	var c clock
	var sum int64
	for i := 0; i < b.N; i++ {
		sum += c.now()
	}
	_ = sum
}

// TestTicks checks that the counter read in assembly counts forward, whether or not the
// kernel keeps time with it here (under an emulator it may not).
func TestTicks(t *testing.T) {
	if tickSource == "" {
		t.Skip("no counter read on " + runtime.GOARCH)
	}
	t0 := ticks()
	time.Sleep(2 * time.Millisecond)
	if t1 := ticks(); t1 <= t0 {
		t.Fatalf("counter went from %d to %d in 2ms", t0, t1)
	}
}
