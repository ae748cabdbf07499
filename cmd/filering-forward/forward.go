package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/forward"
	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/ramdisk"
)

func forwardCommand() *cli.Command {
	return &cli.Command{
		Name:      "forward",
		Usage:     "forward a ring's records to a NATS JetStream stream, each stored exactly once",
		ArgsUsage: "DIR",
		Description: "Publishes every record of the ring to SUBJECT of a JetStream stream, in sequence order, one message\n" +
			"per record, resuming after the last message the stream holds; records the ring lost before they\n" +
			"could be forwarded become gap markers and are reported. Runs until interrupted. See docs/FORWARD.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", EnvVars: []string{"NATS_URL"}, Usage: "NATS server `URL`s, comma-separated (a leaf node on the board, or the cluster)"},
			&cli.StringFlag{Name: "stream", Usage: "the JetStream stream's `NAME`"},
			&cli.StringFlag{Name: "subject", Usage: "the `SUBJECT` the ring's messages are published to; one subject per ring"},
			&cli.StringFlag{Name: "creds", Usage: "NATS credentials `FILE` (JWT and NKey seed)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "PEM `FILE` of the certificates to check the server's against"},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM client certificate `FILE`, for servers that ask for one (with --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM `FILE` of the client certificate's key"},
			&cli.BoolFlag{Name: "create-stream", Usage: "create the stream when it does not exist (file storage), or add the subject to it"},
			&cli.DurationFlag{Name: "max-age", Usage: "with --create-stream: drop messages older than `DURATION`"},
			&cli.StringFlag{Name: "max-bytes", Usage: "with --create-stream: keep at most `SIZE` of messages (e.g. 10GiB), dropping the oldest"},
			&cli.IntFlag{Name: "replicas", Usage: "with --create-stream: `N` copies of the stream in the cluster (0 means 1)"},
			&cli.DurationFlag{Name: "duplicates", Usage: "with --create-stream: JetStream's deduplication window, `DURATION`; the forwarder does not depend on it", DefaultText: "the server's, 2m"},
			&cli.IntFlag{Name: "window", Aliases: []string{"batch"}, Value: forward.DefaultWindow, Usage: "at most `N` records published and not yet acknowledged"},
			&cli.DurationFlag{Name: "ack-timeout", Value: forward.DefaultAckTimeout, Usage: "a publish not acknowledged within `DURATION` fails, and the forwarder reconnects and resumes"},
			&cli.IntFlag{Name: "last", Usage: "on a first run (the stream holds nothing for SUBJECT), start with the last `N` records"},
			&cli.Uint64Flag{Name: "from", Usage: "on a first run, start with sequence number `SEQ`"},
			&cli.DurationFlag{Name: "since", Usage: "on a first run, start with the records appended in the last `DURATION`"},
			&cli.StringFlag{Name: "lock-dir", Usage: "`DIR` of the lock that keeps a second forwarder of the ring to the subject from running (default /run/filering for root, else $XDG_RUNTIME_DIR/filering)"},
		},
		Action: forwardRing,
	}
}

// syncLog writes "filering: " lines to w from any goroutine.
type syncLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *syncLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "filering: "+format+"\n", args...)
}

func forwardRing(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	for _, name := range []string{"server", "stream", "subject"} {
		if c.String(name) == "" {
			return cmdline.Usagef("forward: --%s is required", name)
		}
	}
	if !c.Bool("create-stream") {
		for _, name := range []string{"max-age", "max-bytes", "replicas", "duplicates"} {
			if c.IsSet(name) {
				return cmdline.Usagef("forward: --%s needs --create-stream", name)
			}
		}
	}
	var maxBytes int64
	if s := c.String("max-bytes"); s != "" {
		if maxBytes, err = ramdisk.ParseSize(s); err != nil {
			return cmdline.Usagef("--max-bytes: %v", err)
		}
	}
	if c.Int("replicas") < 0 || c.Duration("max-age") < 0 || c.Duration("duplicates") < 0 {
		return cmdline.Usagef("forward: --replicas, --max-age and --duplicates must not be negative")
	}
	if c.Int("window") < 1 {
		return cmdline.Usagef("--window %d: want at least 1", c.Int("window"))
	}
	if c.Duration("ack-timeout") <= 0 {
		return cmdline.Usagef("--ack-timeout %v: want a positive duration", c.Duration("ack-timeout"))
	}
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
		return cmdline.Usagef("forward: --tls-cert and --tls-key go together")
	}
	sel, err := cmdline.Selection(c)
	if err != nil {
		return err
	}
	stream, subject := c.String("stream"), c.String("subject")
	lockDir := c.String("lock-dir")
	if lockDir == "" {
		lockDir = forward.DefaultLockDir()
	}
	log := &syncLog{w: c.App.ErrWriter}

	lock, err := forward.AcquireLock(lockDir, dir, stream, subject)
	if err != nil {
		return err
	}
	defer lock.Release()
	ctx, cancel := cmdline.SignalContext()
	defer cancel()

	nc, err := forward.Connect(forward.ConnectOptions{
		Servers: c.String("server"),
		Name:    "filering forward " + dir,
		Creds:   c.String("creds"),
		TLSCA:   c.String("tls-ca"),
		TLSCert: c.String("tls-cert"),
		TLSKey:  c.String("tls-key"),
		Logf:    log.logf,
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	if c.Bool("create-stream") {
		err := ensureStream(ctx, log, func(ctx context.Context) error {
			return forward.EnsureStream(ctx, nc, forward.StreamOptions{
				Name: stream, Subject: subject,
				MaxAge: c.Duration("max-age"), MaxBytes: maxBytes,
				Replicas: c.Int("replicas"), Duplicates: c.Duration("duplicates"),
			})
		})
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
	f, err := forward.New(nc, forward.Config{
		Dir: dir, Stream: stream, Subject: subject, First: sel,
		Window: c.Int("window"), AckTimeout: c.Duration("ack-timeout"),
		Logf: log.logf,
	})
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// ensureStream calls ensure until it succeeds or ctx is done, waiting between attempts
// (the server may not be reachable yet); it reports each new error once.
func ensureStream(ctx context.Context, log *syncLog, ensure func(context.Context) error) error {
	last := ""
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := ensure(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if msg := err.Error(); msg != last {
			log.logf("%v; trying again", err)
			last = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
