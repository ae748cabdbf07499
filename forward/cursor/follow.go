package cursor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/filering/filering/watch"
)

// Kind tells what an Item is.
type Kind int

const (
	// Record is a record of the ring.
	Record Kind = iota + 1
	// Gap is a range of records the follower will never deliver: overwritten by the ring
	// (or taken, or damaged) before it reached them.
	Gap
)

// Item is what a Follower delivers: a record, or a gap before the next one.
type Item struct {
	Kind Kind
	Ring string // the identity of the ring the record or gap belongs to
	// Seq is the record's sequence number; for a Gap, the first record lost.
	Seq uint64
	// To is the last sequence number the item covers: Seq for a record, the last record
	// lost for a Gap.
	To   uint64
	Time int64  // a record's time, ns since the Unix epoch (0 for a Gap)
	Data []byte // a record's payload, valid until the next call to Next
	// NewRing is set on the first item of a ring other than the cursor's (or than the
	// ring of the items before): the ring was created anew, its sequence numbers start
	// over. That first item is record 1 or a Gap from 1.
	NewRing bool
}

// Cursor returns the position after the item.
func (it Item) Cursor() Cursor { return Cursor{Ring: it.Ring, Seq: it.To} }

// Options say how a Follower starts and what it tells.
type Options struct {
	// First selects the records to start with when the cursor is the zero Cursor (no
	// position yet), as `watch` selects them. The zero Selection is every retained
	// record. A ring that does not exist yet when Follow is called is followed from its
	// first record, and records it lost before the follower read it are a Gap.
	First watch.Selection
	// Logf receives what the follower reports besides items: damage it skipped (whose
	// records then come as a Gap), waiting for a ring that does not exist yet. Nil
	// discards them.
	Logf func(format string, args ...any)
	// Spin, when above zero, makes the follower spin on the ring for up to Spin before
	// it sleeps: see watch.Follower.Spin.
	Spin time.Duration
}

// Follower delivers the items after a Cursor: records in increasing sequence order, each
// at most once, and a Gap for every record in between it will never deliver. Its Items
// cover every sequence number after the cursor without a hole: the first item of the
// cursor's ring starts at Seq+1, each later item of a ring starts right after the one
// before, and the first item of another ring starts at 1.
//
// A Follower is not safe for concurrent use; functions given to OnWait run on the
// goroutine that calls Next.
type Follower struct {
	dir  string
	opts Options
	pos  Cursor // the position after the last item delivered (or the starting cursor)
	// first is set until the first ring is opened: a zero position then uses
	// opts.First.
	first   bool
	noRing  bool // the ring directory did not exist when Follow was called
	ring    *watch.Ring
	fl      *watch.Follower
	id      string // the identity of the ring fl reads
	newRing bool   // the next item starts another ring than pos's
	// checked is set once the identity has been read again after fl delivered its first
	// item: only then is it known that fl reads the ring whose identity is id.
	checked bool
	queue   []Item // items learnt and not delivered yet
	item    Item
	err     error
	flErr   error // what stopped the watch follower, returned once the queue is delivered
	// cctx, a child of parent, is what the watch follower waits with; see context.
	parent context.Context
	cctx   context.Context
	cancel context.CancelFunc
	idle   func()
	waited bool // a wait for the ring to appear was reported
}

// Follow returns a Follower of the ring directory dir that delivers the items after c
// (see the package documentation). The ring need not exist yet: Next waits for it.
func Follow(dir string, c Cursor, opts Options) (*Follower, error) {
	if err := c.Valid(); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	f := &Follower{dir: dir, opts: opts, pos: c, first: true}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		f.noRing = true
	}
	return f, nil
}

// OnWait sets a function the Follower calls each time it is about to wait for new
// records, for instance to flush what the caller buffered.
func (f *Follower) OnWait(fn func()) { f.idle = fn }

// Position returns the position after the last item delivered: the cursor to save.
func (f *Follower) Position() Cursor { return f.pos }

// Item returns the current item. A record's Data is valid until the next call to Next.
func (f *Follower) Item() Item { return f.item }

// Err returns why Next returned false: ctx.Err() after cancellation (Next may be called
// again and goes on where it was), or what stopped the follower.
func (f *Follower) Err() error { return f.err }

// Close releases the ring.
func (f *Follower) Close() error {
	f.closeRing()
	if f.cctx != nil {
		f.cancel()
		f.cctx = nil
	}
	return nil
}

func (f *Follower) closeRing() {
	if f.fl != nil {
		f.fl.Close()
		f.fl = nil
	}
	if f.ring != nil {
		f.ring.Close()
		f.ring = nil
	}
	f.queue = f.queue[:0]
}

// Next waits for the next item and reports whether there is one.
func (f *Follower) Next(ctx context.Context) bool {
	if errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded) {
		f.err = nil
	}
	for f.err == nil {
		if len(f.queue) > 0 {
			if !f.checked || f.queue[0].Kind == Gap {
				ok, err := f.check()
				if err != nil {
					f.err = err
					return false
				}
				if !ok {
					continue // reopened: the queue was dropped
				}
			}
			f.deliver(f.queue[0])
			f.queue = f.queue[1:]
			return true
		}
		if f.flErr != nil {
			f.err, f.flErr = f.flErr, nil
			return false
		}
		if err := ctx.Err(); err != nil {
			f.err = err
			return false
		}
		if f.fl == nil {
			if err := f.open(ctx); err != nil {
				f.err = err
				return false
			}
			continue
		}
		if f.fl.Next(f.context(ctx)) {
			if f.fl.Restarted() {
				// The ring was created anew: open it afresh, reading its identity
				// before and after, so that no record is told under another ring's.
				f.closeRing()
				continue
			}
			r := f.fl.Record()
			f.queue = append(f.queue, Item{Kind: Record, Ring: f.id, Seq: r.Seq, To: r.Seq, Time: r.Time, Data: r.Data})
			continue
		}
		err := f.fl.Err()
		if ctx.Err() == nil && errors.Is(err, context.Canceled) {
			continue // cancelled here, to deliver the gap learnt before a wait
		}
		if f.fl.SkipDamaged() {
			// The damaged records come as a Gap.
			f.opts.Logf("%v", err)
			continue
		}
		f.flErr = err
	}
	return false
}

// context returns the context for the watch follower's Next: a child of ctx that the
// follower cancels when the watch follower is about to wait while a gap it learnt is
// still queued, so that the gap is delivered at once rather than with the next record.
// The child is kept from one call to the next while ctx stays the same.
func (f *Follower) context(ctx context.Context) context.Context {
	if f.cctx != nil && (f.parent != ctx || f.cctx.Err() != nil) {
		f.cancel()
		f.cctx = nil
	}
	if f.cctx == nil {
		f.parent = ctx
		f.cctx, f.cancel = context.WithCancel(ctx)
	}
	return f.cctx
}

// deliver makes it the current item and moves the position after it.
func (f *Follower) deliver(it Item) {
	if it.Ring != f.pos.Ring && !f.pos.IsZero() {
		it.NewRing = true
	}
	f.item = it
	f.pos = it.Cursor()
}

// open reads the ring's identity and opens a watch follower of the records after the
// position; it waits (polling) while the ring or its identity does not exist yet.
func (f *Follower) open(ctx context.Context) error {
	for {
		id, err := ReadRingID(f.dir)
		if errors.Is(err, fs.ErrNotExist) {
			if !f.waited {
				f.opts.Logf("%s: no ring yet; waiting for it to be created", f.dir)
				f.waited = true
			}
			if f.first {
				// Every record such a ring will hold is one to deliver.
				f.noRing = true
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(watch.FastPollInterval):
			}
			continue
		}
		if err != nil {
			return err
		}
		var sel watch.Selection
		switch {
		case f.pos.IsZero():
			sel = f.opts.First
			if f.noRing && sel.Last == 0 && sel.Since.IsZero() {
				sel.From = max(sel.From, 1)
			}
		case f.pos.Ring == id:
			sel.From = f.pos.Seq + 1
		default:
			sel.From = 1 // another ring: all of it, and what it lost as a Gap from 1
		}
		r, err := watch.Open(f.dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since: the identity read tells
		}
		if err != nil {
			return err
		}
		fl, err := r.Follow(sel)
		if err != nil {
			r.Close()
			return err
		}
		f.ring, f.fl, f.id, f.checked, f.first = r, fl, id, false, false
		fl.Spin(f.opts.Spin)
		fl.OnWait(func() {
			if len(f.queue) > 0 {
				f.cancel() // deliver the queued gap rather than wait
				return
			}
			if f.idle != nil {
				f.idle()
			}
		})
		fl.OnLoss(func(l watch.Loss) {
			f.queue = append(f.queue, Item{Kind: Gap, Ring: f.id, Seq: l.From, To: l.To})
		})
		return nil
	}
}

// check reads the ring's identity again once the watch follower delivered its first
// item: if it is still the one read before the follower was opened, the ring was not
// created anew in between, and the items are the ring's. Otherwise it drops them and
// reopens. Losses are checked each time too: the watch follower starts over without
// a record when the ring is created anew, and reports what the new ring lost first.
func (f *Follower) check() (bool, error) {
	id, err := ReadRingID(f.dir)
	if err == nil && id == f.id {
		if f.queue[0].Kind == Record {
			f.checked = true
		}
		return true, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	f.closeRing() // the next Next opens the ring again after the position
	return false, nil
}

// String describes the follower, for messages.
func (f *Follower) String() string {
	return fmt.Sprintf("%s after %v", f.dir, f.pos)
}
