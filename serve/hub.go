package serve

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/filering/filering/watch"
)

// hub is the one follower of the ring that every event stream shares: it keeps the last
// records, already encoded as events, in a ring buffer, and wakes the streams when new
// ones arrive. Streams copy what they need under the lock and write without it, so a
// slow client holds up nobody.
type hub struct {
	mu      sync.Mutex
	slots   []hubSlot
	head    int    // index of the oldest record
	n       int    // records held
	newest  uint64 // sequence number of the newest record seen
	changed chan struct{}
	nclient int
	lost    uint64 // records the follower found lost: overwritten or damaged before it read them
	epoch   uint64 // grows when the ring is created anew and sequence numbers restart
	// current is set once the hub's follower has read all the ring had and waits for
	// more. Until then, a client that asks for records beyond the newest the hub holds
	// may be asking for records the hub has yet to read, not ones the ring never had.
	current bool
	// ready is closed once the hub has first caught up with the ring, or found that
	// there is none (or none it can follow): until then its newest sequence number is
	// not the ring's.
	ready   chan struct{}
	settled bool
}

type hubSlot struct {
	seq   uint64
	event []byte
}

func newHub(size int) *hub {
	return &hub{slots: make([]hubSlot, size), changed: make(chan struct{}), ready: make(chan struct{})}
}

// run follows the ring of src until ctx is done, waiting for it when there is none yet.
// Server.Run runs it.
func (h *hub) run(ctx context.Context, src *ringSource) {
	for ctx.Err() == nil {
		rh, err := src.acquire()
		if err != nil {
			h.settle()
			sleepCtx(ctx, watch.FastPollInterval) // no ring directory (yet)
			continue
		}
		h.follow(ctx, rh.ring)
		rh.release()
		h.settle()
		h.mu.Lock()
		h.current = false
		h.mu.Unlock()
		sleepCtx(ctx, watch.FastPollInterval) // a damaged ring: try again
	}
}

// follow adds the records of r to the hub until ctx is done or the follower fails.
func (h *hub) follow(ctx context.Context, r *watch.Ring) {
	f, err := r.Follow(watch.Selection{Last: len(h.slots)})
	if err != nil {
		return
	}
	defer f.Close()
	f.OnWait(h.caughtUp)
	var ev []byte
	for {
		for f.Next(ctx) {
			rec := f.Record()
			ev = ev[:0]
			if l, ok := f.Loss(); ok {
				// Streams learn of records the ring overwrote, or damage hid, before the
				// hub read them.
				ev = fmt.Appendf(ev, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", l.From, l.To)
				h.addLost(l.To - l.From + 1)
			}
			ev = appendEvent(ev, rec)
			h.add(rec.Seq, ev)
		}
		// Damage: go on after it (its records show as lost with the next record) rather
		// than start over, which would read the ring again and look like a new one.
		if !f.SkipDamaged() {
			return
		}
	}
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// caughtUp records that the hub's follower has read everything the ring holds, and
// wakes the streams waiting to learn it.
func (h *hub) caughtUp() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settleLocked()
	if !h.current {
		h.current = true
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// settle closes ready, once.
func (h *hub) settle() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settleLocked()
}

func (h *hub) settleLocked() {
	if !h.settled {
		h.settled = true
		close(h.ready)
	}
}

// waitReady waits until ready is closed or ctx is done.
func (h *hub) waitReady(ctx context.Context) {
	select {
	case <-h.ready:
	case <-ctx.Done():
	}
}

func (h *hub) add(seq uint64, ev []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.newest && h.n > 0 {
		h.head, h.n = 0, 0 // the ring was created anew
		h.epoch++
	}
	i := (h.head + h.n) % len(h.slots)
	if h.n == len(h.slots) {
		h.head = (h.head + 1) % len(h.slots)
	} else {
		h.n++
	}
	h.slots[i] = hubSlot{seq: seq, event: append(h.slots[i].event[:0], ev...)}
	h.newest = seq
	close(h.changed)
	h.changed = make(chan struct{})
}

// since appends to b the events of records from sequence number next on, up to 256 KiB,
// and returns the sequence number to ask for next time and the channel closed when more
// arrive. behind reports that next is older than what the hub holds.
func (h *hub) since(next uint64, epoch *uint64, b []byte) (events []byte, after uint64, changed <-chan struct{}, behind bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *epoch != h.epoch || (h.current && h.n > 0 && next > seqAfter(h.newest)) {
		// The ring was created anew (or the client has seen numbers this ring never
		// reached): tell the client, and start over with what the hub holds.
		*epoch = h.epoch
		b = append(b, "event: restart\ndata: {}\n\n"...)
		next = 1
		if h.n > 0 {
			next = h.slots[h.head].seq
		}
	}
	if h.n == 0 || next > h.newest {
		return b, next, h.changed, false
	}
	if next < h.slots[h.head].seq {
		return b, next, h.changed, true
	}
	// Sequence numbers in the hub grow, with gaps where its follower lost records:
	// find the first one at or after next.
	lo, hi := 0, h.n
	for lo < hi {
		m := (lo + hi) / 2
		if h.slots[(h.head+m)%len(h.slots)].seq < next {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for k := lo; k < h.n && len(b) < 256<<10; k++ {
		sl := &h.slots[(h.head+k)%len(h.slots)]
		b = append(b, sl.event...)
		next = seqAfter(sl.seq)
	}
	return b, next, h.changed, false
}

// waitAfter waits until the hub has seen a record newer than after, or ctx is done.
func (h *hub) waitAfter(ctx context.Context, after uint64) {
	for {
		h.mu.Lock()
		newest, ch := h.newest, h.changed
		h.mu.Unlock()
		if newest > after {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (h *hub) newestSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.newest
}

// oldestSeq returns the oldest sequence number the hub holds, 0 when none.
func (h *hub) oldestSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	return h.slots[h.head].seq
}

// clients adds d to the count of event streams and returns the current epoch.
func (h *hub) clients(d int) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nclient += d
	return h.epoch
}

// clientCount returns the number of event streams.
func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nclient
}

// addLost counts n records the follower found lost.
func (h *hub) addLost(n uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lost += n
}

// lostCount returns the records the follower found lost, since the Server started.
func (h *hub) lostCount() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}
