package serve

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/filering/filering/recordio"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// maxUint64 is the largest sequence number a client may name.
const maxUint64 = math.MaxUint64

// hubReadyWait is the longest an event stream waits for a hub that has just started
// to catch up with the ring.
const hubReadyWait = 2 * time.Second

// seqAfter returns the sequence number after seq. For the largest one, which no ring
// reaches, it returns seq itself rather than wrapping to 0: what follows it is as far
// ahead of any ring.
func seqAfter(seq uint64) uint64 {
	if seq == maxUint64 {
		return seq
	}
	return seq + 1
}

// events answers /events: Server-Sent Events, one a record, "id: SEQ" and
// "data: {"seq":N,"time_ns":T,"value":V}" (see appendRecordJSON). A stream starts after
// the Last-Event-ID header's sequence number, else after ?after=SEQ, else with the last
// ?last=N records (at most MaxLast), else with the next record. Records the ring no
// longer holds are announced with "event: lost" and data {"from":A,"to":B}; a ring
// created anew (or an id the ring never reached) with "event: restart", after which
// the stream starts over with what the hub holds. A comment line (": ping") goes out
// every 15 seconds of quiet. The stream ends when the request's context is done or a
// write fails.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	// A hub that has just started (Serve has just begun, or Rings has just made the
	// Server) has yet to read the ring's newest records: give it a moment, so that a
	// stream asking for the next record, or the last N, does not start at sequence 1.
	ready, cancel := context.WithTimeout(r.Context(), hubReadyWait)
	s.hub.waitReady(ready)
	cancel()
	// next is the first sequence number the client wants. Ids come from the client and
	// may be anything up to 2^64-1: seqAfter never wraps one around to 0.
	next := seqAfter(s.hub.newestSeq())
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "Last-Event-ID: want a sequence number")
			return
		}
		next = seqAfter(n)
	} else if r.URL.Query().Has("after") {
		n, err := queryUint(r, "after", 0, maxUint64)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		next = seqAfter(n)
	} else if last, err := queryLast(r, 0); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	} else if last > 0 && next > last {
		next -= last
	} else if last > 0 {
		next = 1
	}
	if next > 1 && next-1 > s.hub.newestSeq() {
		// An id from /records, which reads the ring itself, can be ahead of the hub by
		// records it has yet to read: give the hub a moment to reach it before taking
		// it for an id from a ring since created anew.
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		s.hub.waitAfter(ctx, next-2)
		cancel()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	epoch := s.hub.clients(+1)
	defer s.hub.clients(-1)
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	var buf []byte
	for {
		events, after, changed, behind := s.hub.since(next, &epoch, buf[:0])
		buf, next = events, after
		if behind {
			// Older than what the hub keeps: read those from the ring itself.
			var err error
			if buf, next, err = s.catchUp(next, buf[:0]); err != nil {
				return
			}
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			fl.Flush()
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-ping.C:
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// catchUp reads records from next on from the ring, up to what the hub holds, as
// events. Records no longer in the ring are announced with a "lost" event.
func (s *Server) catchUp(next uint64, b []byte) ([]byte, uint64, error) {
	h, err := s.src.acquire()
	if err != nil {
		return b, next, err
	}
	defer h.release()
	snap, err := h.ring.Snapshot(watch.Selection{From: next})
	if err != nil {
		return b, next, err
	}
	defer snap.Close()
	oldest := s.hub.oldestSeq()
	for len(b) < 1<<20 && snap.Next() {
		rec := snap.Record()
		if oldest != 0 && rec.Seq >= oldest {
			break
		}
		if rec.Seq > next {
			b = fmt.Appendf(b, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", next, rec.Seq-1)
		}
		b = appendEvent(b, rec)
		next = seqAfter(rec.Seq)
	}
	if oldest != 0 && next < oldest && len(b) < 1<<20 {
		// Nothing more in the ring before what the hub holds: those were lost.
		b = fmt.Appendf(b, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", next, oldest-1)
		next = oldest
	}
	return b, next, snap.Err()
}

// decimal matches payloads that are served as JSON numbers. It is compiled on first
// use, not at the start of every filering command.
var decimal = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$`)
})

// appendRecordJSON appends {"seq":N,"time_ns":T,"value":V}.
func appendRecordJSON(b []byte, r segment.Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time_ns":`...)
	b = strconv.AppendInt(b, r.Time, 10)
	b = append(b, `,"value":`...)
	return append(appendValueJSON(b, r.Data), '}')
}

// appendValueJSON appends a payload as the value of a record: a JSON number when it is
// a decimal number, else a JSON string (invalid UTF-8 replaced).
func appendValueJSON(b, data []byte) []byte {
	if len(data) < 64 && decimal().Match(data) {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64); err == nil {
			return strconv.AppendFloat(b, v, 'g', -1, 64)
		}
	}
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	return recordio.AppendJSONString(b, data)
}

// appendEvent appends one Server-Sent Event for r.
func appendEvent(b []byte, r segment.Record) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, "\ndata: "...)
	return append(appendRecordJSON(b, r), "\n\n"...)
}
