package forward

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// maxRepairs bounds the repairs one resume makes before it gives up for now (each
// needs a message stored out of order since the one before, which only a publisher
// still at work can cause).
const maxRepairs = 8

// resumePoint is where a session continues: after the last message of the subject.
type resumePoint struct {
	tail     span   // the last message of the subject
	hasTail  bool   // false: the subject holds nothing
	subjLast uint64 // tail's stream sequence (0 when none): the fence of the first publish
}

// resume reads the last message stored for the subject, checks that the messages since
// the last one it says was acknowledged in order follow one another without a hole, and
// mends the order when they do not: the messages from the first one out of place to the
// end of the subject are removed, to be published again in order. See docs/FORWARD.md.
func (f *Forwarder) resume(ctx context.Context, st jetstream.Stream) (resumePoint, error) {
	for range maxRepairs {
		last, err := st.GetLastMsgForSubject(ctx, f.cfg.Subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return resumePoint{}, nil
		}
		if err != nil {
			return resumePoint{}, fmt.Errorf("read the last message of %s: %w", f.cfg.Subject, err)
		}
		ls, err := parseSpan(last)
		if err != nil {
			return resumePoint{}, f.foreign(err)
		}
		w, err := f.walk(ctx, st, ls.acked)
		if err != nil {
			return resumePoint{}, err
		}
		if w.breakSeq == 0 {
			if !w.has { // everything went while we looked (retention): start again
				continue
			}
			f.pos = w.tail.end()
			return resumePoint{tail: w.tail, hasTail: true, subjLast: w.tailSeq}, nil
		}
		if err := f.repair(ctx, st, w); err != nil {
			return resumePoint{}, err
		}
	}
	return resumePoint{}, fmt.Errorf("subject %s: messages kept arriving out of order while the forwarder mended them; is another publisher at work on it?", f.cfg.Subject)
}

// foreign turns a message that is not a forwarder's into the error Run stops with.
func (f *Forwarder) foreign(err error) error {
	return errPermanent{fmt.Errorf("stream %s, subject %s: %w; a subject must carry one ring, published only by its forwarder", f.cfg.Stream, f.cfg.Subject, err)}
}

// walked is what walk found.
type walked struct {
	tail     span // the last message in order
	tailSeq  uint64
	has      bool
	breakSeq uint64 // the stream sequence of the first message out of order; 0 if none
	brk      span
}

// walk reads the messages of the subject from the stream sequence anchor on and returns
// the last one of the run that follows the message at anchor without a hole, and the
// first message that does not, if any. When the message at anchor is gone (retention),
// the run starts with the first message after it.
func (f *Forwarder) walk(ctx context.Context, st jetstream.Stream, anchor uint64) (walked, error) {
	var w walked
	seq := uint64(1)
	if anchor > 0 {
		seq = anchor + 1
		m, err := st.GetMsg(ctx, anchor)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return w, fmt.Errorf("read stream sequence %d: %w", anchor, err)
		case m.Subject == f.cfg.Subject:
			s, err := parseSpan(m)
			if err != nil {
				return w, f.foreign(err)
			}
			w.tail, w.tailSeq, w.has = s, anchor, true
		}
	}
	for {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f.cfg.Subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return w, nil
		}
		if err != nil {
			return w, fmt.Errorf("read the messages of %s from stream sequence %d: %w", f.cfg.Subject, seq, err)
		}
		s, err := parseSpan(m)
		if err != nil {
			return w, f.foreign(err)
		}
		if w.has && !s.follows(w.tail) {
			w.breakSeq, w.brk = m.Sequence, s
			return w, nil
		}
		w.tail, w.tailSeq, w.has = s, m.Sequence, true
		seq = m.Sequence + 1
	}
}

// repair removes the messages of the subject from w.breakSeq to the end: messages a
// forwarder published ahead of one that was not stored. They must all be of one ring
// (one forwarder's pipeline); anything else is left alone and stops the forwarder.
// The records they held are published again after it, with new identifiers (see
// HeaderMsgID).
func (f *Forwarder) repair(ctx context.Context, st jetstream.Stream, w walked) error {
	var seqs []uint64
	var first, last uint64
	for seq := w.breakSeq; ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f.cfg.Subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the messages of %s from stream sequence %d: %w", f.cfg.Subject, seq, err)
		}
		s, err := parseSpan(m)
		if err != nil {
			return f.foreign(err)
		}
		if s.ring != w.brk.ring {
			return errPermanent{fmt.Errorf("stream %s, subject %s: the messages from stream sequence %d on are out of order and of more than one ring (%s, %s); not removing them: is another forwarder publishing to the subject?",
				f.cfg.Stream, f.cfg.Subject, w.breakSeq, w.brk.ring, s.ring)}
		}
		if len(seqs) == 0 {
			first = s.first
		}
		first, last = min(first, s.first), max(last, s.last)
		seqs = append(seqs, m.Sequence)
		seq = m.Sequence + 1
	}
	if len(seqs) == 0 {
		return nil // gone meanwhile
	}
	missing := "the ring's first records"
	if w.brk.ring == w.tail.ring {
		missing = fmt.Sprintf("records %d to %d", w.tail.last+1, w.brk.first-1)
		if w.brk.first <= w.tail.last {
			missing = fmt.Sprintf("the records after %d", w.tail.last)
		}
	}
	f.cfg.Logf("%s: stream %s holds %s of ring %s at stream sequences %d to %d, without %s before them; removing them to publish them again in order",
		f.cfg.Dir, f.cfg.Stream, spanText(first, last), w.brk.ring, seqs[0], seqs[len(seqs)-1], missing)
	for _, q := range seqs {
		if err := st.DeleteMsg(ctx, q); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("remove stream sequence %d: %w", q, err)
		}
	}
	f.reissueRange(w.brk.ring, first, last, seqs[0])
	f.mu.Lock()
	f.stats.Repairs++
	f.mu.Unlock()
	return nil
}

func spanText(first, last uint64) string {
	if first == last {
		return fmt.Sprintf("record %d", first)
	}
	return fmt.Sprintf("records %d to %d", first, last)
}
