package watch

import (
	"context"
)

// WaitAfter blocks until the ring holds a record with a sequence number greater than
// after, and returns the newest sequence number then. It returns ctx.Err() when ctx is
// done first. The ring need not exist yet. Damage it meets on the way is passed to
// onDamage (which may be nil), and skipped.
func (r *Ring) WaitAfter(ctx context.Context, after uint64, onDamage func(error)) (uint64, error) {
	if after >= maxSeq {
		// No sequence number can be greater: wait for ctx, as for any record yet to come.
		<-ctx.Done()
		return 0, ctx.Err()
	}
	f, err := r.Follow(Selection{From: after + 1})
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for !f.Next(ctx) {
		err := f.Err()
		if !f.SkipDamaged() {
			return 0, err
		}
		if onDamage != nil {
			onDamage(err)
		}
	}
	newest := f.Record().Seq
	if st, err := r.Stat(); err == nil && st.LastSeq > newest {
		newest = st.LastSeq
	}
	return newest, nil
}

// maxSeq is the largest sequence number a record can carry (docs/FORMAT.md: below 2^63).
const maxSeq = 1<<63 - 1
