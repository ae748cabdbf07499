package publish

import (
	"math/bits"
	"os"
	"strings"
	"sync"
	"time"
)

// clockResync is how often the clock reads the wall clock again. A step of the system
// clock (NTP setting the time after boot, an administrator) shows in record times within
// this long.
const clockResync = 100 * time.Millisecond

// Calibration of the CPU's counter against the monotonic clock: only from an interval
// this long or longer (shorter ones measure the clock reads more than the counter),
// and no longer than calMax (the arithmetic below holds it in 64 bits).
const (
	calMin = 10 * time.Millisecond
	calMax = 10 * time.Second
)

// clock gives record timestamps: nanoseconds since the Unix epoch, as time.Now does, for
// a fraction of the cost. It reads the wall clock once and adds the time elapsed since,
// reading the wall clock again every clockResync.
//
// The time elapsed comes from the CPU's own counter where the kernel keeps time with it
// too (the TSC on amd64, the generic timer's virtual count on arm64: see ticks), which
// costs a third of a monotonic clock read, converted with a rate measured against the
// monotonic clock over the previous resynchronisation period. Until a first rate is
// measured, and where there is no such counter, it reads the monotonic clock instead.
// Either way a reading is within a few microseconds of time.Now's.
//
// Not safe for concurrent use: the Writer uses it with w.mu held.
type clock struct {
	base time.Time // a reading with its monotonic part
	wall int64     // base in ns since the epoch

	tick0 int64  // the counter at base
	mult  uint64 // ns per counter tick, 32.32 fixed point; 0: not measured
	span  int64  // ticks in clockResync at that rate
}

// now returns the current time in ns since the Unix epoch.
func (c *clock) now() int64 {
	if c.mult != 0 {
		if d := ticks() - c.tick0; d >= 0 && d < c.span {
			return c.wall + int64((uint64(d)*c.mult)>>32)
		}
		return c.resync()
	}
	d := time.Since(c.base)
	if c.base.IsZero() || d >= clockResync || d < 0 {
		return c.resync()
	}
	return c.wall + int64(d)
}

// resync reads the wall clock again, measures the counter's rate over the period that
// ends, and returns the time.
func (c *clock) resync() int64 {
	if !haveTicks() {
		c.base = time.Now()
		c.wall = c.base.UnixNano()
		return c.wall
	}
	// The counter read on both sides of the clock read, for a midpoint.
	t0 := ticks()
	now := time.Now()
	t1 := ticks()
	tick := t0 + (t1-t0)/2
	if el, dt := now.Sub(c.base), tick-c.tick0; !c.base.IsZero() && el >= calMin && el <= calMax && dt > 0 {
		hi, lo := bits.Mul64(uint64(el), 1<<32)
		if hi < uint64(dt) {
			mult, _ := bits.Div64(hi, lo, uint64(dt))
			// Counters run between 1 MHz and 10 GHz; anything else is a counter
			// that jumped, and the monotonic clock is used until the next period.
			if mult >= 1<<32/10 && mult <= 1000<<32 {
				c.mult = mult
				c.span = int64((uint64(clockResync) << 32) / mult)
			} else {
				c.mult = 0
			}
		}
	}
	c.base, c.wall, c.tick0 = now, now.UnixNano(), tick
	return c.wall
}

var (
	ticksOnce sync.Once
	ticksOK   bool
)

// haveTicks reports whether ticks may be used: the architecture has a counter readable
// from user space (tickSource is its clock source name), and the kernel keeps time with
// it, which it does only where it found the counter constant in rate and the same on
// every CPU.
func haveTicks() bool {
	ticksOnce.Do(func() {
		if tickSource == "" {
			return
		}
		b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
		ticksOK = err == nil && strings.TrimSpace(string(b)) == tickSource
	})
	return ticksOK
}
