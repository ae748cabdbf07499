package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnectOptions say how to reach the NATS servers.
type ConnectOptions struct {
	Servers string // comma-separated URLs, e.g. "nats://leaf.local:4222"
	Name    string // the connection's name, as the server's monitoring shows it
	Creds   string // a credentials file (JWT and NKey seed), if the server wants one
	// TLSCA is a file of PEM certificates to check the server's against; TLSCert and
	// TLSKey a client certificate and its key, for servers that ask for one.
	TLSCA, TLSCert, TLSKey string
	// Logf receives connection events: disconnects, reconnects, asynchronous errors.
	Logf func(format string, args ...any)
}

// Connect connects to NATS the way a Forwarder needs: reconnecting for ever with a
// backoff (from 100 ms, doubling to 5 s, with jitter), publishes failing at once while
// disconnected rather than being buffered, and returning at once even when no server
// can be reached yet (the connection keeps trying in the background).
func Connect(o ConnectOptions) (*nats.Conn, error) {
	if o.Servers == "" {
		return nil, errors.New("no NATS server URL")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key")
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				logf("disconnected from NATS: %v", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logf("reconnected to %s", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			// Said once per failed attempt; the backoff keeps it rare.
			if err != nil {
				logf("connect to NATS: %v", err)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			logf("NATS: %v", err)
		}),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	nc, err := nats.Connect(o.Servers, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", o.Servers, err)
	}
	return nc, nil
}

// reconnectDelay is the wait before reconnect attempt n (counted from 1 after each pass
// over the server list): 100 ms doubling up to 5 s, less up to half of it at random.
func reconnectDelay(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(max(attempts-1, 0), 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// StreamOptions describe a stream for EnsureStream.
type StreamOptions struct {
	Name     string
	Subject  string        // a subject the stream must take
	MaxAge   time.Duration // 0: no limit
	MaxBytes int64         // 0: no limit
	Replicas int           // 0: 1
	// Duplicates is the deduplication window (0: the server's default, 2 minutes). A
	// forwarder does not depend on it; see docs/FORWARD.md.
	Duplicates time.Duration
}

// EnsureStream creates the stream when it does not exist, with file storage and the
// limits given; when it exists and does not take the subject yet, it adds the subject
// to it. Its other settings are left as they are.
func EnsureStream(ctx context.Context, nc *nats.Conn, o StreamOptions) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		st, err := js.Stream(ctx, o.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			cfg := jetstream.StreamConfig{
				Name:       o.Name,
				Subjects:   []string{o.Subject},
				Storage:    jetstream.FileStorage,
				MaxAge:     o.MaxAge,
				MaxBytes:   -1,
				Replicas:   max(o.Replicas, 1),
				Duplicates: o.Duplicates,
			}
			if o.MaxBytes > 0 {
				cfg.MaxBytes = o.MaxBytes
			}
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 5 {
				continue // created meanwhile by another forwarder: look again
			}
			if err != nil {
				return fmt.Errorf("create stream %s: %w", o.Name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", o.Name, err)
		}
		cfg := st.CachedInfo().Config
		if takes(cfg.Subjects, o.Subject) {
			return nil
		}
		cfg.Subjects = append(slices.Clone(cfg.Subjects), o.Subject)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			if attempt < 5 {
				continue // changed meanwhile by another forwarder: look again
			}
			return fmt.Errorf("add subject %s to stream %s: %w", o.Subject, o.Name, err)
		}
	}
}

// takes reports whether one of the subject filters matches subject.
func takes(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether the subject filter (with * and > wildcards) matches the
// literal subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
