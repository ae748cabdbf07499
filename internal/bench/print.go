package bench

import (
	"bufio"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/filering/filering/ramdisk"
)

// Print writes the report as tables, what `filering bench` prints.
func (rep *Report) Print(out io.Writer) error {
	m, s := rep.Machine, rep.Settings
	fs := "tmpfs"
	if !rep.TmpFS {
		fs = "not tmpfs"
	}
	bw := bufio.NewWriter(out)
	fmt.Fprintf(bw, "machine:   %s/%s, %d CPUs, %s, %s, %s\n", m.GOOS, m.GOARCH, m.NumCPU, m.Kernel, m.CPU, m.GoVersion)
	fmt.Fprintf(bw, "load:      %s before, %s after (1, 5, 15 min load averages)\n", rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(bw, "directory: %s (%s, removed after)\n", rep.Dir, fs)
	fmt.Fprintf(bw, "settings:  %v per throughput run after %v of warm-up; rings of %d segments of %s (more for large records);\n"+
		"           rename rewrites the last %s of records; MB/s counts payload bytes, 1 MB = 10^6 bytes\n%s",
		time.Duration(s.DurationS*1e9), time.Duration(s.WarmupS*1e9), s.Segments, ramdisk.FormatSize(s.SegmentSize),
		ramdisk.FormatSize(int64(s.Buffer)), roundsNote(s.Rounds))

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Alone) > 0 {
		fmt.Fprintf(bw, "\n1. Producer alone (pipe and socket drained by a goroutine in the producer's process)\n\n")
		fmt.Fprintln(tw, "size\ttransport\trecords\trecords/s\tMB/s\tx raw\tfilering ÷ this\thuge pages\t")
		for _, r := range rep.Alone {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%s\t%s\t%s\t\n", ramdisk.FormatSize(int64(r.Size)), r.Transport,
				r.Records, siRate(r.RecordsPerSec), r.MBPerSec, ratio(r.OverRaw), ratio(r.FileringOver), hugeColumn(r.HugeShare))
		}
		tw.Flush()
	}
	if len(rep.Follow) > 0 {
		fmt.Fprintf(bw, "\n2. Producer to a reader in another process (as fast as the producer goes; delivered = received ÷ time\n"+
			"   from first send to last receipt; lost counts the whole stream, warm-up included)\n\n")
		fmt.Fprintln(tw, "size\ttransport\tsent\treceived\tlost\tproducer rec/s\tdelivered rec/s\tMB/s\tlag ms\tx raw\tfilering ÷ this\t")
		for _, r := range rep.Follow {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t\n", ramdisk.FormatSize(int64(r.Size)), r.Transport,
				r.Sent, r.Received, r.Lost, siRate(r.ProducerPerSec), siRate(r.RecordsPerSec), r.MBPerSec, r.LagMS, ratio(r.OverRaw), ratio(r.FileringOver))
		}
		tw.Flush()
	}
	if l := rep.Latency; l != nil {
		fmt.Fprintf(bw, "\n3. Wake latency: %s records at %g/s, %d timed after %d of warm-up; send to receipt in the reader process, µs\n\n",
			ramdisk.FormatSize(int64(l.Size)), l.Rate, l.Samples, max(l.Samples/10, 1))
		fmt.Fprintln(tw, "transport\treceived\tlost\tp50\tp90\tp99\tmax\tfilering p50 ÷ this\t")
		for _, r := range l.Transports {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", r.Transport, r.Received, r.Lost,
				r.P50, r.P90, r.P99, r.Max, ratio(r.FileringOver))
		}
		tw.Flush()
	}
	return bw.Flush()
}

// hugeColumn formats an AloneResult's HugeShare: a percentage, "?" when unknown, "-"
// for the baselines.
func hugeColumn(share *float64) string {
	switch {
	case share == nil:
		return "-"
	case *share < 0:
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100**share)
}

func roundsNote(n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf("           %d interleaved rounds; each row is its median round (by records/s, or p50)\n", n)
}

// siRate prints a rate with an SI prefix: 950, 84.3k, 21.4M.
func siRate(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func ratio(x float64) string {
	switch {
	case x == 0:
		return "-"
	case x >= 100:
		return fmt.Sprintf("%.0fx", x)
	case x >= 10:
		return fmt.Sprintf("%.1fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}
