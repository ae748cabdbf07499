package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/forward/cursor"
	"github.com/filering/filering/recordio"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// cursorSaveEvery bounds how often a watch with --cursor-file replaces its cursor file
// while records keep coming; it is also saved whenever the watch waits, and at the end.
const cursorSaveEvery = time.Second

// followCursor is watch --cursor-file path: it resumes after the position saved in path
// (the journalctl --cursor-file convention), starting with sel when there is none, and
// saves the position after what it printed. Records the ring lost between the saved
// position and what it still holds are reported as lost; a ring created anew is followed
// from its first record. A watch killed with SIGKILL prints again what it printed after
// its last save: at least once, never a silent loss.
func followCursor(ctx context.Context, c *cli.Context, dir string, sel watch.Selection, out *recordio.Writer, path string) error {
	pos, err := cursor.Load(path)
	if err != nil {
		return err
	}
	notice := func(format string, args ...any) {
		fmt.Fprintf(c.App.ErrWriter, "filering: "+format+"\n", args...)
	}
	f, err := cursor.Follow(dir, pos, cursor.Options{First: sel, Logf: notice, Spin: c.Duration("spin")})
	if err != nil {
		return err
	}
	defer f.Close()
	saved, lastSave := pos, time.Now()
	// save flushes what was printed, then records the position after it.
	save := func() error {
		if err := out.Flush(); err != nil {
			return err
		}
		if p := f.Position(); p != saved {
			if err := p.Save(path); err != nil {
				return err
			}
			saved = p
		}
		lastSave = time.Now()
		return nil
	}
	var werr error
	f.OnWait(func() {
		if werr == nil {
			werr = save()
		}
	})
	for f.Next(ctx) {
		if werr != nil {
			return werr
		}
		it := f.Item()
		if it.NewRing {
			if err := out.Flush(); err != nil {
				return err
			}
			notice("%s: the ring was created anew; following it from its first record", dir)
		}
		if it.Kind == cursor.Gap {
			if err := out.Flush(); err != nil {
				return err
			}
			notice("%s: %v", dir, watch.Loss{From: it.Seq, To: it.To})
			continue
		}
		if err := out.WriteRecord(segment.Record{Seq: it.Seq, Time: it.Time, Data: it.Data}); err != nil {
			return err
		}
		if time.Since(lastSave) >= cursorSaveEvery {
			if err := save(); err != nil {
				return err
			}
		}
	}
	if err := save(); err != nil {
		return err
	}
	return quiet(ctx, f.Err())
}
