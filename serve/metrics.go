package serve

import (
	"fmt"
	"net/http"
	"strings"

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
	m := s.ringMetrics()
	label := `{ring="` + promEscape(s.src.path) + `"}`
	var b []byte
	gauge := func(name, help string, v any) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %v\n", name, help, name, name, label, v)
	}
	gauge("filering_ring_present", "Whether there is a readable ring at the path (1) or not (0).", b01(m.present))
	gauge("filering_records", "Records the ring holds.", m.records)
	gauge("filering_last_sequence", "Sequence number of the newest record (0: none).", m.lastSeq)
	if m.lastTime != 0 {
		b = fmt.Appendf(b, "# HELP %[1]s Time of the newest record, in seconds since the Unix epoch.\n# TYPE %[1]s gauge\n%[1]s%s %d.%09d\n",
			"filering_last_record_timestamp_seconds", label, m.lastTime/1e9, m.lastTime%1e9)
	}
	gauge("filering_producer_up", "Whether a producer holds the ring's lock (1) or not (0).", b01(m.producer))
	b = fmt.Appendf(b, "# HELP %[1]s Records the server's follower found lost: overwritten or damaged before it read them.\n# TYPE %[1]s counter\n%[1]s%s %d\n",
		"filering_lost_records_total", label, s.hub.lostCount())
	gauge("filering_clients", "Event streams connected.", s.hub.clientCount())
	w.Header().Set("Content-Type", metricsContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// ringMetrics is what /metrics finds in the ring.
type ringMetrics struct {
	present  bool
	records  uint64
	lastSeq  uint64
	lastTime int64 // ns since the epoch; 0: no record
	producer bool
}

func (s *Server) ringMetrics() ringMetrics {
	var m ringMetrics
	h, err := s.src.acquire()
	if err != nil {
		return m
	}
	defer h.release()
	st, err := h.ring.Stat()
	if err != nil {
		return m
	}
	m.present, m.records, m.lastSeq = true, st.Records, st.LastSeq
	if pid, err := h.dir.Producer(); err == nil && pid != 0 {
		m.producer = true
	}
	if snap, err := h.ring.Snapshot(watch.Selection{Last: 1}); err == nil {
		if snap.Next() && snap.Record().Time > 0 {
			m.lastTime = snap.Record().Time
		}
		snap.Close()
	}
	return m
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
