package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/filering/filering/recordio"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// Limits of /records. A response is written as it is read, so what one request holds is
// its write buffer and, beyond it, at most one record and one piece of its encoding
// (recordsPiece); at most RecordsConcurrent requests read the ring at once, so the total is
// bounded too. MaxLast, RecordsConcurrent and RecordsQueueWait are in serve.go.
const (
	// recordsChunk is the size of a /records response's write buffer: the response is
	// sent in pieces of about this size as the records are read.
	recordsChunk = 64 << 10
	// recordsPiece is how much of a long payload is encoded at a time.
	recordsPiece = 16 << 10
	// recordsStall is how long a client may accept no byte of a /records response
	// before the connection is closed, so that a stalled client does not keep its
	// turn.
	recordsStall = 30 * time.Second
	// retryAfter is the Retry-After of the 503 answers, in seconds.
	retryAfter = "1"
)

// recordsLimits are the limits of /records, the constants above in a Server; tests
// change them.
type recordsLimits struct {
	slots     chan struct{} // one token per request reading the ring
	queueWait time.Duration
	stall     time.Duration
	// held is the number of bytes that /records responses hold in their buffers now, and
	// peak the most they have held at once.
	held, peak atomic.Int64
}

func newRecordsLimits(concurrent int) *recordsLimits {
	return &recordsLimits{slots: make(chan struct{}, concurrent), queueWait: RecordsQueueWait, stall: recordsStall}
}

// enter waits up to queueWait for a turn to read the ring and reports whether it got
// one; the caller gives it back with leave.
func (l *recordsLimits) enter(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	if l.queueWait <= 0 {
		return false
	}
	t := time.NewTimer(l.queueWait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (l *recordsLimits) leave() { <-l.slots }

// active returns how many requests are reading the ring.
func (l *recordsLimits) active() int { return len(l.slots) }

// hold accounts for n more bytes held (n < 0: released).
func (l *recordsLimits) hold(n int) {
	v := l.held.Add(int64(n))
	for p := l.peak.Load(); v > p && !l.peak.CompareAndSwap(p, v); p = l.peak.Load() {
	}
}

// queryLast parses last=, from 0 to MaxLast; def when absent.
func queryLast(r *http.Request, def uint64) (uint64, error) {
	v := r.URL.Query().Get("last")
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > MaxLast {
		return 0, fmt.Errorf("last=%q: want a whole number from 0 to %d", v, MaxLast)
	}
	return n, nil
}

// unavailable answers 503 with a Retry-After and the reason.
func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", retryAfter)
	httpError(w, http.StatusServiceUnavailable, msg)
}

// noRingMessage says that there is no ring at path (yet).
func noRingMessage(path string) string {
	return fmt.Sprintf("no ring at %s: waiting for a producer to create it", path)
}

// records answers /records?last=N and /records?after=SEQ&wait=S: the last N records
// (default 300, at most MaxLast), of those newer than SEQ when after= is given, waiting
// up to S seconds (at most 60) for one. The document is
// {"records":[...],"last_seq":N}, where last_seq is the sequence number of the last record
// in it; with no record in it, that of the newest record in the ring (0 for an empty
// ring), but never more than after= (the client would skip the records up to it). It
// is written as the records are read; an error found after part of it was sent ends it
// with an "error" member, `...],"last_seq":N,"error":"..."}`. Before that, errors are
// 400 (a bad query), 503 with Retry-After (no ring at the path yet, or too many
// requests reading the ring at once) or 500.
func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	last, err := queryLast(r, 300)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := queryUint(r, "wait", 0, 60)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	sel := watch.Selection{Last: int(last)}
	// ceiling is the highest last_seq that may be answered with no record: a record
	// that arrived after the snapshot must not be announced, or the client would ask for
	// records after it next time and never get it.
	ceiling := uint64(maxUint64)
	if last > 0 {
		ceiling = 0 // a snapshot of the last records that found none: the ring held none
	}
	if r.URL.Query().Has("after") {
		after, err := queryUint(r, "after", 0, maxUint64)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		sel.From = seqAfter(after)
		ceiling = after
		if wait > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(wait)*time.Second)
			s.hub.waitAfter(ctx, after)
			cancel()
		}
	}
	if !s.limits.enter(r.Context()) {
		unavailable(w, fmt.Sprintf("too many /records requests at once (at most %d); retry", cap(s.limits.slots)))
		return
	}
	defer s.limits.leave()
	h, err := s.src.acquire()
	if err != nil {
		ringError(w, s.src.path, err)
		return
	}
	defer h.release()
	var snap *watch.Snapshot
	if last > 0 { // last=0 selects no record, and answers only last_seq
		if snap, err = h.ring.Snapshot(sel); err != nil {
			ringError(w, s.src.path, err)
			return
		}
		defer snap.Close()
	}
	out := s.newRecordsWriter(w)
	defer out.close()
	out.buf = append(out.buf, `{"records":[`...)
	var newest uint64
	for n := 0; snap != nil && snap.Next(); n++ {
		if n > 0 {
			out.buf = append(out.buf, ',')
		}
		rec := snap.Record()
		if err := out.record(rec); err != nil {
			return // the client went away
		}
		newest = rec.Seq
	}
	if snap != nil {
		err = snap.Err()
	}
	if err == nil && newest == 0 && ceiling > 0 {
		// No record selected: last_seq is the newest the ring holds, up to ceiling.
		newest, err = newestSeq(h.ring)
		newest = min(newest, ceiling)
	}
	if err != nil && !out.started {
		out.buf = out.buf[:0]
		ringError(w, s.src.path, err)
		return
	}
	out.buf = append(out.buf, `],"last_seq":`...)
	out.buf = strconv.AppendUint(out.buf, newest, 10)
	if err != nil {
		out.buf = append(out.buf, `,"error":`...)
		out.buf = recordio.AppendJSONString(out.buf, []byte(toValidUTF8(err.Error())))
	}
	out.buf = append(out.buf, "}\n"...)
	out.send()
}

// newestSeq returns the sequence number of the newest record in the ring, 0 when it
// holds none.
func newestSeq(r *watch.Ring) (uint64, error) {
	snap, err := r.Snapshot(watch.Selection{Last: 1})
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	var seq uint64
	for snap.Next() {
		seq = snap.Record().Seq
	}
	return seq, snap.Err()
}

// recordsWriter writes a /records document in pieces of about recordsChunk bytes,
// accounting for the bytes it holds in s.limits.
type recordsWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	limits  *recordsLimits
	buf     []byte
	held    int  // bytes accounted for: cap(buf)
	started bool // the status and part of the document were sent
	err     error
}

func (s *Server) newRecordsWriter(w http.ResponseWriter) *recordsWriter {
	out := &recordsWriter{w: w, rc: http.NewResponseController(w), limits: s.limits}
	out.buf = make([]byte, 0, recordsChunk+recordsChunk/4)
	out.account()
	return out
}

// account brings the bytes held in limits up to date with the buffer's size.
func (o *recordsWriter) account() {
	if c := cap(o.buf); c != o.held {
		o.limits.hold(c - o.held)
		o.held = c
	}
}

// record appends one record, {"seq":N,"time_ns":T,"value":V}, sending the buffer
// whenever it holds recordsChunk bytes or more. A long payload is encoded a piece at a
// time, so that the buffer never holds more than recordsChunk plus one piece's encoding.
func (o *recordsWriter) record(rec segment.Record) error {
	if len(rec.Data) <= recordsPiece {
		o.buf = appendRecordJSON(o.buf, rec)
		o.account()
		return o.maybeSend()
	}
	o.buf = append(o.buf, `{"seq":`...)
	o.buf = strconv.AppendUint(o.buf, rec.Seq, 10)
	o.buf = append(o.buf, `,"time_ns":`...)
	o.buf = strconv.AppendInt(o.buf, rec.Time, 10)
	o.buf = append(o.buf, `,"value":"`...)
	d := rec.Data
	if !utf8.Valid(d) {
		d = bytes.ToValidUTF8(d, []byte("\uFFFD"))
	}
	for len(d) > 0 {
		n := min(len(d), recordsPiece)
		for n < len(d) && n > 1 && !utf8.RuneStart(d[n]) {
			n-- // cut between characters, not inside one
		}
		o.buf = appendJSONStringBody(o.buf, d[:n])
		d = d[n:]
		o.account()
		if err := o.maybeSend(); err != nil {
			return err
		}
	}
	o.buf = append(o.buf, `"}`...)
	o.account()
	return nil
}

// appendJSONStringBody appends s, valid UTF-8, escaped as inside a JSON string, without
// the quotes around it.
func appendJSONStringBody(b, s []byte) []byte {
	start := len(b)
	b = recordio.AppendJSONString(b, s)
	copy(b[start:], b[start+1:len(b)-1])
	return b[:len(b)-2]
}

func (o *recordsWriter) maybeSend() error {
	if len(o.buf) < recordsChunk {
		return nil
	}
	return o.send()
}

// send writes the buffer to the client, with the status and headers first.
func (o *recordsWriter) send() error {
	if o.err != nil {
		return o.err
	}
	if !o.started {
		o.started = true
		h := o.w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		o.w.WriteHeader(http.StatusOK)
	}
	if len(o.buf) == 0 {
		return nil
	}
	o.rc.SetWriteDeadline(time.Now().Add(o.limits.stall)) // unsupported: no deadline
	_, o.err = o.w.Write(o.buf)
	o.buf = o.buf[:0]
	if cap(o.buf) > recordsChunk*2 {
		// One long record grew it: give the memory back.
		o.buf = make([]byte, 0, recordsChunk+recordsChunk/4)
		o.account()
	}
	return o.err
}

// close releases the buffer. The write deadline set last stays for the rest of the
// response, which net/http writes after the handler returns; it lifts it then.
func (o *recordsWriter) close() {
	o.buf = nil
	o.account()
}

// toValidUTF8 replaces invalid UTF-8 in s, for JSON.
func toValidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
}

// ringError answers for an error reading the ring at path: 503 with Retry-After when
// there is no ring there (yet) or the Server was closed, 500 otherwise.
func ringError(w http.ResponseWriter, path string, err error) {
	if noRing(err) {
		unavailable(w, noRingMessage(path))
		return
	}
	if errors.Is(err, ErrClosed) {
		unavailable(w, err.Error())
		return
	}
	httpError(w, http.StatusInternalServerError, err.Error())
}
