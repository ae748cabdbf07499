package main

import (
	"context"
	"fmt"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a ring, or a directory of rings, over HTTP: JSON, Server-Sent Events and a live graph page",
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
			"--unit gives every series a unit (°C), or each its own: --unit temp:°C,hum:%% (a unit\n"+
			"alone in the list is that of the series not named); the page's ?unit= takes the same.\n"+
			"Records are {\"seq\":N,\"time_ns\":T,\"value\":V}: V is the payload as a number when it is a\n"+
			"decimal number, else as a string. One follower reads the ring for every client; a slow\n"+
			"client never slows the producer or the other clients. /records responses are sent as\n"+
			"they are read; at most %d are read at once, and a request that finds no turn within %v\n"+
			"gets 503 with Retry-After. Until a ring exists at DIR, /records and /healthz answer 503\n"+
			"and serve picks the ring up when it appears, or when it is removed and created anew.\n"+
			"\n"+
			"A directory of rings (DIR holds no manifest, and subdirectories that are rings, such as\n"+
			"/run/ring; or any DIR with --rings) is served as: GET / an index page of the rings (newest\n"+
			"value, rate, records, producer up), GET /rings the same as JSON, GET /metrics every ring's\n"+
			"metrics labelled ring=\"NAME\", GET /healthz, and each ring's endpoints above under /NAME/.\n"+
			"Rings created or removed later show or go. Give --rings when DIR may hold no ring yet.",
			serve.MaxLast, serve.RecordsConcurrent, serve.RecordsQueueWait),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "`ADDRESS` to listen on (loopback unless told otherwise)"},
			&cli.BoolFlag{Name: "rings", Usage: "serve DIR as a directory of rings, even while it holds none"},
			&cli.IntFlag{Name: "buffer", Usage: "records kept in memory for event streams, per ring", DefaultText: fmt.Sprintf("%d; %d per ring of a directory of rings", serve.DefaultBuffer, serve.DefaultRingsBuffer)},
			&cli.DurationFlag{Name: "stale", Usage: "/healthz fails when the newest record is older than `DURATION` (0: no check)"},
			&cli.StringFlag{Name: "unit", Usage: "the page shows the values in `UNIT`: °C, or per series temp:°C,hum:% (the page's ?unit= overrides it)"},
			&cli.Float64Flag{Name: "min", Usage: "the page's y-axis starts at `Y` (?min= overrides it)", DefaultText: "autoscale"},
			&cli.Float64Flag{Name: "max", Usage: "the page's y-axis ends at `Y` (?max= overrides it)", DefaultText: "autoscale"},
			&cli.DurationFlag{Name: "window", Usage: "the page draws the last `DURATION` of records (?window= overrides it)", DefaultText: "the last 600 records"},
		},
		Action: serveRing,
	}
}

// serveRing serves the ring at DIR, or the rings in DIR, until SIGINT or SIGTERM, then
// exits 0. It listens at once, whether or not there is a ring at DIR yet, and says on
// stderr when there is none; it fails at once when DIR cannot be a ring directory.
func serveRing(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	opts, err := serveOptions(c)
	if err != nil {
		return err
	}
	many := c.Bool("rings")
	if !many {
		if many, err = serve.HoldsRings(dir); err != nil {
			return err
		}
	}
	ctx, cancel := cmdline.SignalContext()
	defer cancel()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	if many {
		return serveRings(ctx, c, dir, opts, ln)
	}
	if opts.Buffer == 0 {
		opts.Buffer = serve.DefaultBuffer
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

// serveRings serves the rings in dir on ln until ctx is done.
func serveRings(ctx context.Context, c *cli.Context, dir string, opts serve.Options, ln net.Listener) error {
	if opts.Buffer == 0 {
		opts.Buffer = serve.DefaultRingsBuffer
	}
	rs, err := serve.NewRings(dir, serve.RingsOptions{Ring: opts})
	if err != nil {
		ln.Close()
		return err
	}
	defer rs.Close()
	fmt.Fprintf(c.App.ErrWriter, "filering: serving the rings in %s on http://%s/\n", dir, ln.Addr())
	if held, err := serve.HoldsRings(dir); err == nil && !held {
		fmt.Fprintf(c.App.ErrWriter, "filering: no ring in %s yet: each shows on the index once a producer creates it\n", dir)
	}
	return rs.Serve(ctx, ln)
}

// serveOptions returns the options the flags give, with Buffer 0 when --buffer is not
// given.
func serveOptions(c *cli.Context) (serve.Options, error) {
	opts := serve.Options{Buffer: c.Int("buffer"), Stale: c.Duration("stale")}
	var err error
	if opts.Page.Unit, opts.Page.Units, err = serve.ParseUnits(c.String("unit")); err != nil {
		return opts, cmdline.Usagef("--%v", err)
	}
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
		return opts, cmdline.Usagef("--min %v, --max %v: want min below max", *m, *x)
	}
	if opts.Page.Window < 0 {
		return opts, cmdline.Usagef("--window %v: must not be negative", opts.Page.Window)
	}
	if c.IsSet("buffer") && (opts.Buffer < 1 || opts.Buffer > serve.MaxBuffer) {
		return opts, cmdline.Usagef("--buffer %d: want 1 to %d", opts.Buffer, serve.MaxBuffer)
	}
	if opts.Stale < 0 {
		return opts, cmdline.Usagef("--stale %v: must not be negative", opts.Stale)
	}
	return opts, nil
}
