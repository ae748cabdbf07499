package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/watch"
)

func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "summarize a ring",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON (the same as --format json)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "output `FORMAT`: text, json, or prometheus (the text format node_exporter's textfile collector reads; a ring that does not exist yet is filering_ring_present 0)"},
		},
		Action: stat,
	}
}

// statJSON is the document `stat --json` prints.
type statJSON struct {
	Dir         string `json:"dir"`
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	Records     uint64 `json:"records"`
	Segments    int    `json:"segments"`
	SegmentsMax int    `json:"segments_max"`
	SegmentSize int64  `json:"segment_size"`
	HotSegment  string `json:"hot_segment"`
	Generation  uint64 `json:"generation"`
	ProducerPID *int   `json:"producer_pid"`
	TmpFS       bool   `json:"tmpfs"`
}

func stat(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	format := c.String("format")
	if c.Bool("json") {
		format = "json"
	}
	if format != "text" && format != "json" && format != "prometheus" {
		return cmdline.Usagef("stat: --format %q: want text, json or prometheus", format)
	}
	r, err := watch.Open(dir)
	if err == nil {
		defer r.Close()
	}
	var st watch.Stat
	if err == nil {
		st, err = r.Stat()
	}
	if format == "prometheus" && (errors.Is(err, os.ErrNotExist) || errors.Is(err, watch.ErrNoRing)) {
		_, err := c.App.Writer.Write(appendProm(nil, dir, nil))
		return err
	}
	if err != nil {
		return err
	}
	// Damage first, then the summary of everything readable; exit 1 at the end.
	for _, d := range st.Damage {
		fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", d)
	}
	info, _ := ramdisk.Check(dir)
	j := statJSON{Dir: dir, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Records: st.Records, Segments: st.Segments,
		SegmentsMax: st.SegmentsMax, SegmentSize: st.SegmentSize, HotSegment: st.HotSegment, Generation: st.Generation, TmpFS: info.TmpFS}
	if st.ProducerPID != 0 {
		j.ProducerPID = &st.ProducerPID
	}
	w := c.App.Writer
	if format == "prometheus" {
		if _, err := w.Write(appendProm(nil, dir, &st)); err != nil {
			return err
		}
		return damagedIf(len(st.Damage) > 0)
	}
	if format == "json" {
		b, _ := json.Marshal(j)
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
		return damagedIf(len(st.Damage) > 0)
	}
	producer := "none running"
	if j.ProducerPID != nil {
		producer = fmt.Sprintf("pid %d", *j.ProducerPID)
	}
	fs := "tmpfs"
	if !info.TmpFS {
		fs = "NOT tmpfs (" + info.FSType + ")"
	}
	hot := st.HotSegment
	if hot == "" {
		hot = "none (all sealed)"
	}
	_, err = fmt.Fprintf(w, "ring:      %s (%s)\nrecords:   %d (sequence %d to %d)\nsegments:  %d of %d, %s each\nhot:       %s\nproducer:  %s\n",
		dir, fs, st.Records, st.FirstSeq, st.LastSeq, st.Segments, st.SegmentsMax, ramdisk.FormatSize(st.SegmentSize), hot, producer)
	if err != nil {
		return err
	}
	return damagedIf(len(st.Damage) > 0)
}

// damagedIf returns errDamaged when damage was reported.
func damagedIf(damaged bool) error {
	if damaged {
		return errDamaged
	}
	return nil
}

// appendProm appends the summary of the ring at dir in the Prometheus text format, each
// sample labelled ring="DIR"; st is nil when there is no ring (yet).
func appendProm(b []byte, dir string, st *watch.Stat) []byte {
	label := `{ring="` + promLabel.Replace(dir) + `"}`
	gauge := func(name, help string, v any) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s gauge\n%s%s %v\n", name, help, name, name, label, v)
	}
	if st == nil {
		gauge("filering_ring_present", "Whether the directory holds a ring.", 0)
		return b
	}
	up := 0
	if st.ProducerPID != 0 {
		up = 1
	}
	gauge("filering_ring_present", "Whether the directory holds a ring.", 1)
	gauge("filering_records", "Records the ring retains.", st.Records)
	gauge("filering_first_sequence", "Sequence number of the oldest retained record; 0 when there is none.", st.FirstSeq)
	gauge("filering_last_sequence", "Sequence number of the newest record; 0 when there is none.", st.LastSeq)
	gauge("filering_segments", "Segment files the ring holds.", st.Segments)
	gauge("filering_segments_max", "Segments the ring retains at most.", st.SegmentsMax)
	gauge("filering_segment_size_bytes", "Size of every segment file.", st.SegmentSize)
	gauge("filering_producer_up", "Whether a producer holds the ring's lock.", up)
	gauge("filering_damaged_segments", "Segments in which damage was found.", len(st.Damage))
	return b
}

// promLabel escapes a Prometheus label value.
var promLabel = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
