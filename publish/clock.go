package publish

import "time"

// clockResync is how often the clock reads the wall clock again. A step of the system
// clock (NTP setting the time after boot, an administrator) shows in record times within
// this long.
const clockResync = 100 * time.Millisecond

// clock gives record timestamps: nanoseconds since the Unix epoch, as time.Now does, for
// about half the cost. It reads the wall clock once and adds the monotonic time elapsed
// since, which is one clock read rather than two; it reads the wall clock again every
// clockResync. Not safe for concurrent use: the Writer uses it with w.mu held.
type clock struct {
	base time.Time // a reading with its monotonic part
	wall int64     // base in ns since the epoch
}

// now returns the current time in ns since the Unix epoch.
func (c *clock) now() int64 {
	d := time.Since(c.base)
	if c.base.IsZero() || d >= clockResync || d < 0 {
		c.base = time.Now()
		c.wall = c.base.UnixNano()
		return c.wall
	}
	return c.wall + int64(d)
}
