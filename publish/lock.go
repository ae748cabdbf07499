package publish

import (
	"runtime"
	"sync/atomic"
	"time"
)

// lock is the Writer's mutex. It keeps sync.Mutex's contract (and serves sync.Cond) and
// differs in one thing, for speed: Unlock is a plain release store, not a locked
// instruction. Append takes the lock once per record, and on amd64 a locked instruction
// waits for every store before it, the record's, to reach the cache: sync.Mutex's
// Unlock was an eighth of a 64-byte Append (docs/BENCHMARKS.md, "Producer, 64 B").
//
// A goroutine that finds the lock held registers as waiting, retries a few times,
// yielding, then sleeps until an Unlock hands it the lock (still held) or lockNap
// passes. While anyone waits, Lock does not take the lock past them, and an Unlock that
// sees a sleeper hands the lock to it, so a goroutine locking in a tight loop (an
// appender) cannot keep the Writer's other goroutines out. An Unlock that does not see
// a sleeper in time (its load may be answered before its own stores are visible)
// leaves the lock free: the sleeper takes it when its nap ends.
//
// The zero lock excludes; init makes the channel it hands over on.
type lock struct {
	state    uint32        // 1 while held
	waiting  atomic.Int32  // goroutines in lockSlow
	sleeping atomic.Int32  // of those, the ones asleep on handoff
	handoff  chan struct{} // unbuffered: receiving from it is being handed the held lock
}

// lockSpins is how many times a waiting goroutine retries, yielding in between, before
// it sleeps; lockNap how long it sleeps at most before it retries by itself (a variable
// for tests).
const lockSpins = 20

var lockNap = 50 * time.Microsecond

func (l *lock) init() { l.handoff = make(chan struct{}) }

// Lock locks l, waiting until it is free.
func (l *lock) Lock() {
	if l.waiting.Load() == 0 && atomic.CompareAndSwapUint32(&l.state, 0, 1) {
		return
	}
	l.lockSlow()
}

func (l *lock) lockSlow() {
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	var nap *time.Timer
	for i := 0; ; i++ {
		if atomic.LoadUint32(&l.state) == 0 && atomic.CompareAndSwapUint32(&l.state, 0, 1) {
			return
		}
		if i < lockSpins {
			runtime.Gosched()
			continue
		}
		if nap == nil {
			nap = time.NewTimer(lockNap)
			defer nap.Stop()
		} else {
			nap.Reset(lockNap)
		}
		l.sleeping.Add(1)
		select {
		case <-l.handoff:
			l.sleeping.Add(-1)
			return
		case <-nap.C:
		}
		l.sleeping.Add(-1)
	}
}

// Unlock unlocks l, or hands it, still locked, to a goroutine asleep in Lock.
func (l *lock) Unlock() {
	if l.sleeping.Load() > 0 {
		select {
		case l.handoff <- struct{}{}:
			return
		default:
		}
	}
	storeRelease32(&l.state, 0)
}
