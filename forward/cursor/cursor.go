// Package cursor resumes reading a ring after a remembered position: a ring identity and
// a sequence number. It is the follower half of `filering forward`, and what
// `filering watch --cursor-file` uses to continue where an earlier run stopped.
//
// A position is a Cursor, (ring, seq): the ring's identity (docs/FORMAT.md, "The ring's
// identity") and the sequence number of the last record dealt with. Follow opens a
// Follower that delivers, in order, every record after it, and reports as a Gap every
// record in between that the ring no longer holds, so that nothing is skipped silently:
//
//   - the same ring: the records from seq+1 on; a Gap first when the ring has already
//     overwritten seq+1;
//   - another ring (the ring was created anew at the same path): that ring from its first
//     retained record, marked NewRing, with a Gap from 1 first when that record is not 1;
//   - no position yet (the zero Cursor): what Options.First selects, as `watch` does.
//
// Save and Load keep a Cursor in a small file, replaced atomically.
package cursor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Cursor is a position in a ring: the last record dealt with (delivered, forwarded or
// reported lost). The zero Cursor is no position.
type Cursor struct {
	Ring string `json:"ring"` // the ring's identity: 32 lowercase hexadecimal digits
	Seq  uint64 `json:"seq"`  // the sequence number of the last record dealt with
}

// IsZero reports whether c is no position.
func (c Cursor) IsZero() bool { return c.Ring == "" }

// String returns "RING:SEQ", or "none" for the zero Cursor.
func (c Cursor) String() string {
	if c.IsZero() {
		return "none"
	}
	return c.Ring + ":" + strconv.FormatUint(c.Seq, 10)
}

// Valid checks c: the zero Cursor, or a ring identity as FORMAT.md defines it.
func (c Cursor) Valid() error {
	if c.IsZero() {
		if c.Seq != 0 {
			return fmt.Errorf("cursor: sequence %d without a ring", c.Seq)
		}
		return nil
	}
	if _, err := segment.ParseID([]byte(c.Ring + "\n")); err != nil {
		return fmt.Errorf("cursor: ring %q: %w", c.Ring, err)
	}
	return nil
}

// maxFileSize bounds what Load reads of a cursor file.
const maxFileSize = 4096

// Load reads the cursor file at path. A file that does not exist is no position yet:
// the zero Cursor and no error. Anything but one JSON object {"ring":...,"seq":...}
// holding a valid position is an error naming the file.
func Load(path string) (Cursor, error) {
	f, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Cursor{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return Cursor{}, fmt.Errorf("%s: not a cursor file: longer than %d bytes", path, maxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Cursor
	if err := dec.Decode(&c); err != nil {
		return Cursor{}, fmt.Errorf("%s: not a cursor file: %v", path, err)
	}
	if dec.More() {
		return Cursor{}, fmt.Errorf("%s: not a cursor file: more than one JSON value", path)
	}
	if err := c.Valid(); err != nil {
		return Cursor{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Save writes c to path, replacing it atomically: a temporary file in the same directory,
// written, synced and renamed over path, then the directory synced. A reader of path sees
// the old cursor or the new one, never a mix, and a crash leaves one of them.
func (c Cursor) Save(path string) error {
	if err := c.Valid(); err != nil {
		return err
	}
	b, _ := json.Marshal(c)
	b = append(b, '\n')
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("save cursor %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("save cursor %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: tmpfs and some file systems refuse to sync a directory
		d.Close()
	}
	return nil
}

// ErrNoID means the ring directory holds no identity yet: the ring does not exist yet,
// or was made before identities existed and no producer has opened it since (the
// producer gives such a ring one when it opens it). It wraps fs.ErrNotExist.
var ErrNoID = fmt.Errorf("no ring identity (%s) yet: %w", segment.IDName, fs.ErrNotExist)

// ReadRingID reads the identity of the ring at dir from its id file, opened as
// FORMAT.md asks (no symbolic links, nothing but a regular file, never blocking on a
// FIFO) and read up to one byte more than an identity file holds. A missing directory
// or id file is ErrNoID; a malformed one an error naming the file.
func ReadRingID(dir string) (string, error) {
	path := filepath.Join(dir, segment.IDName)
	f, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", dir, ErrNoID)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, segment.MaxIDFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id, err := segment.ParseID(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// openRegular opens path for reading without following a symbolic link or blocking on a
// FIFO, and refuses anything but a regular file.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s: a symbolic link, not a regular file", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, strings.TrimSpace(fi.Mode().Type().String()))
	}
	return f, nil
}
