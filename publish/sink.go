package publish

import "errors"

// Sink appends batches of records to a Writer and keeps a producer that feeds a live
// ring running through a full file system. When there is no room for a new segment even
// after every older segment was dropped (ErrNoSpace), it drops the incoming records
// instead of failing, says so once through logf, and, when records are appended again,
// says exactly how many were dropped: they were never appended, so never numbered.
// `filering produce` appends what it reads through one.
//
// A Sink is for one goroutine at a time; the Writer under it may be shared.
type Sink struct {
	w       *Writer
	logf    func(string, ...any)
	dropped uint64 // records dropped since the file system filled up
}

// NewSink returns a Sink appending to w that gives its notices to logf (nil: none).
func NewSink(w *Writer, logf func(format string, args ...any)) *Sink {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Sink{w: w, logf: logf}
}

// AppendBatch appends ps as Writer.AppendBatch does, except that the records it cannot
// append for want of room are dropped and counted, not an error. Other errors (such as
// ErrClosed or ErrTooLarge) are returned as they are.
func (s *Sink) AppendBatch(ps [][]byte) error {
	_, n, err := s.w.AppendBatch(ps)
	if n > 0 && s.dropped > 0 {
		s.logf("%s: room again: appending from sequence %d on; %d records read meanwhile were dropped (never appended, so never numbered)",
			s.w.Dir(), s.w.NextSeq()-uint64(n), s.dropped)
		s.dropped = 0
	}
	if !errors.Is(err, ErrNoSpace) {
		return err
	}
	if s.dropped == 0 {
		s.logf("%s: %v; dropping records read until there is room", s.w.Dir(), err)
	}
	s.dropped += uint64(len(ps) - n)
	return nil
}

// Dropped returns how many records were dropped since the file system last filled up
// and not yet reported: those dropped after the last record appended.
func (s *Sink) Dropped() uint64 { return s.dropped }
