package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/watch"
)

func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "summarize a ring",
		ArgsUsage: "DIR",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action:    stat,
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
	dir, err := ringArg(c)
	if err != nil {
		return err
	}
	r, err := watch.Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	st, err := r.Stat()
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
	if c.Bool("json") {
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
