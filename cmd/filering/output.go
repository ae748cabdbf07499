package main

import (
	"io"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/recordio"
)

// newRecordWriter returns the writer of --format for cat, watch and take.
func newRecordWriter(w io.Writer, format string) (*recordio.Writer, error) {
	if !recordio.ValidFormat(format) {
		return nil, cmdline.Usagef("--format %q: want lines, json or raw", format)
	}
	return recordio.NewWriter(w, format)
}
