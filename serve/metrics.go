package serve

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/filering/filering/watch"
)

// metricsContentType is the content type of the Prometheus text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// metrics answers /metrics in the Prometheus text exposition format (version 0.0.4).
// Every sample has the label ring="DIR", the ring directory's path:
//
//	filering_ring_present                   1 when there is a readable ring at the path, else 0
//	filering_records                        records the ring holds
//	filering_last_sequence                  sequence number of the newest record (0: none)
//	filering_last_record_timestamp_seconds  time of the newest record, Unix seconds (absent
//	                                        when the ring holds none)
//	filering_producer_up                    1 when a producer holds the ring's lock, else 0
//	filering_lost_records_total             records the server's follower found lost
//	                                        (overwritten or damaged before it read them), a
//	                                        counter since the server started
//	filering_clients                        event streams connected
//
// The ring's gauges are 0 when there is no ring or it cannot be read.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	m := s.ringState(1)
	writeMetrics(w, appendMetrics(nil, []ringSample{{ring: s.src.path, st: m, lost: s.hub.lostCount(), clients: s.hub.clientCount()}}))
}

// writeMetrics answers with b, a document in the text exposition format.
func writeMetrics(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// ringSample is what /metrics says of one ring: the label's value, what was found in
// the ring, and its follower's counts.
type ringSample struct {
	ring    string
	st      ringState
	lost    uint64
	clients int
}

// appendMetrics appends the metrics of the rings, each family once with its samples
// for every ring, in the order of rings.
func appendMetrics(b []byte, rings []ringSample) []byte {
	family := func(name, typ, help string, value func(*ringSample) (string, bool)) {
		head := false
		for i := range rings {
			v, ok := value(&rings[i])
			if !ok {
				continue
			}
			if !head {
				b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
				head = true
			}
			b = fmt.Appendf(b, "%s{ring=\"%s\"} %s\n", name, promEscape(rings[i].ring), v)
		}
	}
	gauge := func(name, help string, value func(*ringSample) any) {
		family(name, "gauge", help, func(r *ringSample) (string, bool) { return fmt.Sprint(value(r)), true })
	}
	gauge("filering_ring_present", "Whether there is a readable ring at the path (1) or not (0).", func(r *ringSample) any { return b01(r.st.present) })
	gauge("filering_records", "Records the ring holds.", func(r *ringSample) any { return r.st.records })
	gauge("filering_last_sequence", "Sequence number of the newest record (0: none).", func(r *ringSample) any { return r.st.lastSeq })
	family("filering_last_record_timestamp_seconds", "gauge", "Time of the newest record, in seconds since the Unix epoch.", func(r *ringSample) (string, bool) {
		t := r.st.lastTime
		return fmt.Sprintf("%d.%09d", t/1e9, t%1e9), t > 0
	})
	gauge("filering_producer_up", "Whether a producer holds the ring's lock (1) or not (0).", func(r *ringSample) any { return b01(r.st.producerPID != 0) })
	family("filering_lost_records_total", "counter", "Records the server's follower found lost: overwritten or damaged before it read them.", func(r *ringSample) (string, bool) {
		return fmt.Sprint(r.lost), true
	})
	gauge("filering_clients", "Event streams connected.", func(r *ringSample) any { return r.clients })
	return b
}

// ringState is what a look at a ring finds: what /metrics, /healthz and the index of
// Rings report.
type ringState struct {
	present     bool // the ring could be read
	records     uint64
	lastSeq     uint64
	lastTime    int64 // of the newest record, ns since the epoch; 0: no record
	producerPID int   // 0: no producer holds the lock (or it could not be asked)
	// newest is the newest record's payload, at most previewBytes of it; newestLen
	// its length.
	newest    []byte
	newestLen int
	// rate is the records a second appended in the rateWindow before now, estimated
	// from the newest records read.
	rate float64
	err  error // why the ring could not be read (present is false), or the producer not asked
}

// Limits of a look at a ring.
const (
	// previewBytes is how much of the newest payload a look keeps.
	previewBytes = 256
	// rateWindow is the span over which the rate of records is measured.
	rateWindow = 10 * time.Second
)

// ringState looks at the Server's ring, reading its newest recent records.
func (s *Server) ringState(recent int) ringState {
	h, err := s.src.acquire()
	if err != nil {
		return ringState{err: err}
	}
	defer h.release()
	return h.look(recent, s.now())
}

// look examines the ring: its summary, its producer and the newest recent records (at
// least 1), from which it takes the newest payload and estimates the rate at now: the
// records appended in the rateWindow before now, or, when every record read is in that
// window, the rate over them.
func (h *ringHandle) look(recent int, now time.Time) ringState {
	var st ringState
	ws, err := h.ring.Stat()
	if err != nil {
		st.err = err
		return st
	}
	st.present, st.records, st.lastSeq = true, ws.Records, ws.LastSeq
	// Stat takes a lock file it may not read for "no producer": ask here to tell.
	if pid, err := h.dir.Producer(); err != nil {
		st.err = err
	} else {
		st.producerPID = pid
	}
	snap, err := h.ring.Snapshot(watch.Selection{Last: max(recent, 1)})
	if err != nil {
		return st
	}
	defer snap.Close()
	var first, last int64
	n, inWindow := 0, 0
	from := now.Add(-rateWindow).UnixNano()
	for snap.Next() {
		rec := snap.Record()
		if n == 0 {
			first = rec.Time
		}
		last = rec.Time
		if rec.Time >= from {
			inWindow++
		}
		n++
		st.newest = append(st.newest[:0], rec.Data[:min(len(rec.Data), previewBytes)]...)
		st.newestLen = len(rec.Data)
	}
	if n > 0 && last > 0 {
		st.lastTime = last
	}
	// Every record read in the window: more came in it than were read, so the rate is
	// that of the records read, up to now (it falls when the producer stops).
	if span := max(now.UnixNano()-first, last-first); n > 1 && inWindow == n && span > 0 {
		st.rate = float64(n-1) / (float64(span) / 1e9)
	} else {
		st.rate = float64(inWindow) / rateWindow.Seconds()
	}
	return st
}

func b01(v bool) int {
	if v {
		return 1
	}
	return 0
}

// promEscape escapes a label value: backslash, double quote and newline.
func promEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(toValidUTF8(v))
}
