package publish

import (
	"sync"
	"testing"
	"time"
)

// TestLock_Exclusion: goroutines that increment a plain counter under the lock lose no
// increment (and, under -race, the detector sees each Unlock happen before the next
// Lock), with and without the handoff channel.
func TestLock_Exclusion(t *testing.T) {
	for _, handoff := range []bool{true, false} {
		var l lock
		if handoff {
			l.init()
		}
		const goroutines, each = 8, 20000
		n := 0
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					l.Lock()
					n++
					if i%1000 == 0 {
						time.Sleep(time.Microsecond) // hold it long enough for others to sleep
					}
					l.Unlock()
				}
			}()
		}
		wg.Wait()
		if n != goroutines*each {
			t.Fatalf("handoff %v: counter %d, want %d", handoff, n, goroutines*each)
		}
		if l.state != 0 || l.waiting.Load() != 0 || l.sleeping.Load() != 0 {
			t.Fatalf("handoff %v: state %d, %d waiting, %d sleeping after all unlocked", handoff, l.state, l.waiting.Load(), l.sleeping.Load())
		}
	}
}

// TestLock_HandsOver: an Unlock while another goroutine waits hands the lock to it, so
// that the goroutine that unlocked, locking again at once, comes after it. Without the
// handoff, a goroutine locking in a tight loop (an appender) would keep the lock from
// the Writer's other goroutines.
func TestLock_HandsOver(t *testing.T) {
	defer func(nap time.Duration) { lockNap = nap }(lockNap)
	lockNap = time.Minute // asleep, the waiting goroutine gets the lock only handed over
	var l lock
	l.init()
	for round := range 50 {
		l.Lock()
		var other bool // written by the waiting goroutine under the lock
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Lock()
			other = true
			l.Unlock()
		}()
		for l.sleeping.Load() == 0 {
			time.Sleep(10 * time.Microsecond)
		}
		time.Sleep(100 * time.Microsecond) // from counted to asleep in its select
		l.Unlock()
		l.Lock()
		if !other {
			t.Fatalf("round %d: relocked before the waiting goroutine had the lock", round)
		}
		l.Unlock()
		<-done
	}
}

// TestLock_Cond: the lock serves sync.Cond, as the Writer uses it.
func TestLock_Cond(t *testing.T) {
	var l lock
	l.init()
	c := sync.NewCond(&l)
	ready := false
	go func() {
		time.Sleep(time.Millisecond)
		l.Lock()
		ready = true
		c.Broadcast()
		l.Unlock()
	}()
	l.Lock()
	for !ready {
		c.Wait()
	}
	l.Unlock()
}
