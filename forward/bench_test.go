package forward

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/filering/filering/forward/cursor"
	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/watch"
)

// benchRecords is how many records each iteration of BenchmarkForward moves.
const benchRecords = 100_000

// BenchmarkForward measures forwarding 64-byte records from a ring to a JetStream
// stream of a server in this process, against a plain loop of asynchronous JetStream
// publishes of the same payloads to the same server in the same run: without headers,
// with Nats-Msg-Id alone, and with the very headers a forwarder sets. Each iteration moves benchRecords records each
// way into fresh streams; the metrics are records per second and forward's rate over
// each plain one's.
//
//	go test -run '^$' -bench Forward -benchtime 5x ./forward/
func BenchmarkForward(b *testing.B) {
	srv := startServer(b)
	js := srv.js(b)
	dir := ringtest.Dir(b)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 64 << 20, Segments: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	payloads := make([][]byte, benchRecords)
	for i := range payloads {
		p := []byte(fmt.Sprintf("%064d", i))
		payloads[i] = p
	}
	if _, _, err := w.AppendBatch(payloads); err != nil {
		b.Fatal(err)
	}
	id := w.ID()
	nc := srv.connect(b)
	var fwd, plain, plainID, plainHdr time.Duration
	b.ResetTimer()
	for i := range b.N {
		fwd += timeForward(b, js, nc, dir, id, fmt.Sprintf("F%d", i))
		plain += timePlain(b, js, payloads, fmt.Sprintf("P%d", i), bare)
		plainID += timePlain(b, js, payloads, fmt.Sprintf("Q%d", i), msgID)
		plainHdr += timePlain(b, js, payloads, fmt.Sprintf("H%d", i), sameHeaders)
	}
	b.StopTimer()
	rate := func(d time.Duration) float64 { return float64(b.N*benchRecords) / d.Seconds() }
	b.ReportMetric(rate(fwd), "forward-rec/s")
	b.ReportMetric(rate(plain), "plain-rec/s")
	b.ReportMetric(rate(plainID), "plain-msgid-rec/s")
	b.ReportMetric(rate(plainHdr), "plain-headers-rec/s")
	b.ReportMetric(rate(fwd)/rate(plain), "forward/plain")
	b.ReportMetric(rate(fwd)/rate(plainID), "forward/plain-msgid")
	b.ReportMetric(rate(fwd)/rate(plainHdr), "forward/plain-headers")
}

// What the plain loop puts in its messages besides the payload.
const (
	bare        = iota // nothing
	msgID              // Nats-Msg-Id alone
	sameHeaders        // the headers a forwarder sets
)

func newBenchStream(b *testing.B, js jetstream.JetStream, name string) jetstream.Stream {
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func timeForward(b *testing.B, js jetstream.JetStream, nc *nats.Conn, dir, id, name string) time.Duration {
	b.StopTimer()
	newBenchStream(b, js, name)
	defer js.DeleteStream(context.Background(), name)
	f, err := New(nc, Config{Dir: dir, Stream: name, Subject: name, First: watch.Selection{}})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for f.Stats().Last != (cursor.Cursor{Ring: id, Seq: benchRecords}) {
		time.Sleep(100 * time.Microsecond)
	}
	d := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return d
}

func timePlain(b *testing.B, js jetstream.JetStream, payloads [][]byte, name string, headers int) time.Duration {
	b.StopTimer()
	newBenchStream(b, js, name)
	defer js.DeleteStream(context.Background(), name)
	b.StartTimer()
	start := time.Now()
	const ring = "0123456789abcdef0123456789abcdef"
	for i, p := range payloads {
		m := &nats.Msg{Subject: name, Data: p}
		switch headers {
		case msgID:
			m.Header = nats.Header{jetstream.MsgIDHeader: []string{ring + ":" + strconv.Itoa(i+1)}}
		case sameHeaders:
			s := span{ring: ring, first: uint64(i + 1), last: uint64(i + 1), acked: uint64(i)}
			m.Header = s.header(time.Now().UnixNano(), 0)
		}
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acknowledgements missing after a minute")
	}
	d := time.Since(start)
	b.StopTimer()
	return d
}
