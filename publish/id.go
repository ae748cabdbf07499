package publish

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// ensureID reads the ring's identity, or gives the ring one when it has none (a new
// ring, or one an older producer created). An identity that is there but malformed is
// an error: replacing it would make the ring another one for everyone who knew it.
func (w *Writer) ensureID() error {
	f, err := w.dir.OpenFile(segment.IDName, unix.O_RDONLY, 0)
	if errors.Is(err, unix.ENOENT) {
		id := segment.NewID()
		if err := w.fs.replace(segment.IDName, segment.EncodeID(id), w.opts.FileMode.Perm()); err != nil {
			return fmt.Errorf("write ring identity %s: %w", w.dir.Join(segment.IDName), err)
		}
		if w.opts.GID > 0 {
			if err := w.root.Chown(segment.IDName, -1, w.opts.GID); err != nil {
				w.opts.Logf("%s: set group: %v", w.dir.Join(segment.IDName), err)
			}
		}
		w.id = id
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, segment.MaxIDFileSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if w.id, err = segment.ParseID(b); err != nil {
		return fmt.Errorf("%s: %w; remove it to give the ring a new identity", f.Name(), err)
	}
	return nil
}

// ID returns the ring's identity: 32 lowercase hexadecimal digits, the same for as long
// as the ring directory exists (docs/FORMAT.md, "The ring's identity").
func (w *Writer) ID() string { return w.id }
