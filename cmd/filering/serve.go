package main

import (
	"fmt"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a ring over HTTP: JSON, Server-Sent Events and a live graph page",
		ArgsUsage: "DIR",
		Description: fmt.Sprintf("Endpoints:\n"+
			"  GET /                    the live graph page\n"+
			"  GET /records?last=N      the latest N records as JSON (default 300, at most %d)\n"+
			"  GET /records?after=SEQ&wait=S   records newer than SEQ, waiting up to S seconds for one\n"+
			"  GET /events              Server-Sent Events, one per record, id = sequence number;\n"+
			"                           resumes after Last-Event-ID, or ?after=SEQ, or starts with ?last=N\n"+
			"  GET /healthz             {\"ok\":true,...}; 503 and {\"ok\":false,\"reason\":\"...\",...} when there\n"+
			"                           is no ring, no producer holds it, or (--stale) its newest record is too old\n"+
			"  GET /metrics             Prometheus text format: records, newest sequence and record time,\n"+
			"                           records lost, producer up, event streams\n"+
			"The page draws one line per number of a payload (\"21.5 40\", \"21.5,40\") or per numeric\n"+
			"field of a JSON object ({\"temp\":21.5,\"hum\":40}), and lists payloads that are not numeric.\n"+
			"Records are {\"seq\":N,\"time_ns\":T,\"value\":V}: V is the payload as a number when it is a\n"+
			"decimal number, else as a string. One follower reads the ring for every client; a slow\n"+
			"client never slows the producer or the other clients. /records responses are sent as\n"+
			"they are read; at most %d are read at once, and a request that finds no turn within %v\n"+
			"gets 503 with Retry-After. Until a ring exists at DIR, /records and /healthz answer 503\n"+
			"and serve picks the ring up when it appears, or when it is removed and created anew.",
			serve.MaxLast, serve.RecordsConcurrent, serve.RecordsQueueWait),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "`ADDRESS` to listen on (loopback unless told otherwise)"},
			&cli.IntFlag{Name: "buffer", Value: serve.DefaultBuffer, Usage: "records kept in memory for event streams"},
			&cli.DurationFlag{Name: "stale", Usage: "/healthz fails when the newest record is older than `DURATION` (0: no check)"},
			&cli.StringFlag{Name: "unit", Usage: "the page shows the values in `UNIT` (e.g. °C; the page's ?unit= overrides it)"},
			&cli.Float64Flag{Name: "min", Usage: "the page's y-axis starts at `Y` (?min= overrides it)", DefaultText: "autoscale"},
			&cli.Float64Flag{Name: "max", Usage: "the page's y-axis ends at `Y` (?max= overrides it)", DefaultText: "autoscale"},
			&cli.DurationFlag{Name: "window", Usage: "the page draws the last `DURATION` of records (?window= overrides it)", DefaultText: "the last 600 records"},
		},
		Action: serveRing,
	}
}

// serveRing serves the ring at DIR until SIGINT or SIGTERM, then exits 0. It listens
// at once, whether or not there is a ring at DIR yet, and says on stderr when there is
// none; it fails at once when DIR cannot be a ring directory.
func serveRing(c *cli.Context) error {
	dir, err := ringArg(c)
	if err != nil {
		return err
	}
	opts := serve.Options{Buffer: c.Int("buffer"), Stale: c.Duration("stale")}
	opts.Page.Unit = c.String("unit")
	opts.Page.Window = c.Duration("window")
	if c.IsSet("min") {
		v := c.Float64("min")
		opts.Page.Min = &v
	}
	if c.IsSet("max") {
		v := c.Float64("max")
		opts.Page.Max = &v
	}
	if m, x := opts.Page.Min, opts.Page.Max; m != nil && x != nil && !(*m < *x) {
		return usagef("--min %v, --max %v: want min below max", *m, *x)
	}
	if opts.Page.Window < 0 {
		return usagef("--window %v: must not be negative", opts.Page.Window)
	}
	if opts.Buffer < 1 || opts.Buffer > serve.MaxBuffer {
		return usagef("--buffer %d: want 1 to %d", opts.Buffer, serve.MaxBuffer)
	}
	if opts.Stale < 0 {
		return usagef("--stale %v: must not be negative", opts.Stale)
	}
	ctx, cancel := signalContext()
	defer cancel()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	s, err := serve.New(dir, opts)
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	waiting, err := s.Waiting()
	if err != nil {
		ln.Close()
		return err
	}
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "filering: serving %s on http://%s/\n", dir, ln.Addr())
	if waiting {
		fmt.Fprintf(stderr, "filering: no ring at %s yet: waiting for one (/records and /healthz answer 503 until then)\n", dir)
	}
	return s.Serve(ctx, ln)
}
