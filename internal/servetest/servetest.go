// Package servetest holds the HTTP helpers the tests of package serve and of `filering
// serve` share: reading JSON documents and event streams of a running server, and
// filling a ring for it. It is for tests only.
package servetest

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/publish"
)

// ValuesDoc is a /records document with the values as they decode.
type ValuesDoc struct {
	Records []struct {
		Seq   uint64 `json:"seq"`
		Value any    `json:"value"`
	} `json:"records"`
	LastSeq uint64 `json:"last_seq"`
}

// AppendAll appends each payload to w, failing t on an error.
func AppendAll(t testing.TB, w *publish.Writer, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := w.Append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// GetJSON gets url, decodes its body into v and returns the status code.
func GetJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

// WantUnavailable checks that url answers 503 with a JSON body whose field says want.
func WantUnavailable(t testing.TB, url, field, want string) {
	t.Helper()
	var doc map[string]any
	if code := GetJSON(t, url, &doc); code != 503 {
		t.Fatalf("%s: %d %v; want 503", url, code, doc)
	}
	if s, _ := doc[field].(string); !strings.Contains(s, want) {
		t.Fatalf("%s: %v; want %q saying %q", url, doc, field, want)
	}
}

// EventStream opens an event stream, with Last-Event-ID when lastID is not empty, checks
// its headers and returns a scanner of its lines and the function that closes it. On
// failure it reports the error with t.Error (it may run in any goroutine) and returns a
// nil scanner.
func EventStream(t testing.TB, url, lastID string) (*bufio.Scanner, func()) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		t.Error(err)
		return nil, func() {}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("headers %v", resp.Header)
	}
	return bufio.NewScanner(resp.Body), func() { resp.Body.Close(); cancel() }
}

// SSE reads the ids of the first want events of an event stream.
func SSE(t testing.TB, url, lastID string, want int) []uint64 {
	t.Helper()
	sc, done := EventStream(t, url, lastID)
	defer done()
	if sc == nil {
		return nil
	}
	var ids []uint64
	for len(ids) < want && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			n, _ := strconv.ParseUint(id, 10, 64)
			ids = append(ids, n)
		}
	}
	return ids
}
