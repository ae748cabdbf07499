package serve

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/recordio"
	"github.com/filering/filering/watch"
)

// health is what /healthz finds.
type health struct {
	reason      string // why the ring is not healthy; empty when it is
	lastSeq     uint64
	records     uint64
	producerPID int
}

// healthz answers /healthz: 200 and {"ok":true,...} when a producer holds the ring's lock
// and, with Options.Stale, the newest record is no older than that; otherwise 503 and
// {"ok":false,"reason":"...",...}. The other members are last_seq and records (0 when
// unknown), producer_pid (null when no producer holds the lock, or it is unknown) and
// clients, the number of event streams.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	hl := s.health()
	b := []byte(`{"ok":`)
	b = strconv.AppendBool(b, hl.reason == "")
	if hl.reason != "" {
		b = append(b, `,"reason":`...)
		b = recordio.AppendJSONString(b, []byte(toValidUTF8(hl.reason)))
	}
	b = fmt.Appendf(b, `,"last_seq":%d,"records":%d,"producer_pid":`, hl.lastSeq, hl.records)
	if hl.producerPID != 0 {
		b = strconv.AppendInt(b, int64(hl.producerPID), 10)
	} else {
		b = append(b, "null"...)
	}
	b = fmt.Appendf(b, `,"clients":%d}`+"\n", s.hub.clientCount())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if hl.reason != "" {
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write(b)
}

// health examines the ring: that it exists and can be read, that a producer holds its
// lock, and that its newest record is no older than s.stale (when set).
func (s *Server) health() health {
	h, err := s.src.acquire()
	if err != nil {
		return health{reason: ringReason(s.src.path, err)}
	}
	defer h.release()
	st, err := h.ring.Stat()
	if err != nil {
		return health{reason: ringReason(s.src.path, err)}
	}
	hl := health{lastSeq: st.LastSeq, records: st.Records}
	// Stat takes a lock file it may not read for "no producer"; ask here to tell.
	pid, err := h.dir.Producer()
	switch {
	case errors.Is(err, unix.EACCES):
		hl.reason = fmt.Sprintf("cannot tell whether a producer runs: %v", err)
		return hl
	case err != nil:
		hl.reason = err.Error()
		return hl
	case pid == 0:
		hl.reason = "no producer holds the ring"
		return hl
	}
	hl.producerPID = pid
	if s.stale <= 0 {
		return hl
	}
	snap, err := h.ring.Snapshot(watch.Selection{Last: 1})
	if err != nil {
		hl.reason = ringReason(s.src.path, err)
		return hl
	}
	defer snap.Close()
	if !snap.Next() {
		if err := snap.Err(); err != nil {
			hl.reason = err.Error()
		} else {
			hl.reason = fmt.Sprintf("the ring holds no record, --stale is %v", s.stale)
		}
		return hl
	}
	if age := s.now().Sub(time.Unix(0, snap.Record().Time)); age > s.stale {
		hl.reason = fmt.Sprintf("newest record is %v old, --stale is %v", roundAge(age), s.stale)
	}
	return hl
}

// roundAge rounds an age for a message: to the second from ten seconds on, else to the
// millisecond.
func roundAge(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ringReason says what is wrong with the ring at path, for /healthz.
func ringReason(path string, err error) string {
	if noRing(err) {
		return "no ring at " + path
	}
	return err.Error()
}
