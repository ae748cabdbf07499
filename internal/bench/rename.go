package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Names of the rename baseline's files inside its directory.
const (
	renameTarget = "buffer"
	renameTemp   = ".buffer.tmp"
)

// openRename sets up the rename baseline in a new directory of the working directory.
func (b *bencher) openRename(size int) (*link, error) {
	dir, err := os.MkdirTemp(b.dir, "rename-")
	if err != nil {
		return nil, err
	}
	s, err := newRenameSender(dir, frameHeader+size, b.Buffer)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &link{sender: s, path: dir, remove: dir}, nil
}

// renameSender is the rewrite-and-rename baseline: it keeps the last records that fit in
// its buffer (at least one), and on every record writes them all, oldest first, to a
// temporary file in the same directory and renames that over the target.
type renameSender struct {
	dirfd    int
	frameLen int
	slots    int
	win      []byte // slots frames, used as a ring
	count    int    // frames sent
}

func newRenameSender(dir string, frameLen, buffer int) (*renameSender, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	slots := max(buffer/frameLen, 1)
	s := &renameSender{dirfd: fd, frameLen: frameLen, slots: slots, win: make([]byte, slots*frameLen)}
	// The reader's file exists, empty, before the first record.
	if err := s.write(nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *renameSender) send(f frame) error {
	i := s.count % s.slots
	copy(s.win[i*s.frameLen:], f)
	s.count++
	if s.count <= s.slots {
		return s.write([][]byte{s.win[:s.count*s.frameLen]})
	}
	oldest := (s.count % s.slots) * s.frameLen
	return s.write([][]byte{s.win[oldest:], s.win[:oldest]})
}

// write replaces the target with a file holding parts.
func (s *renameSender) write(parts [][]byte) error {
	fd, err := unix.Openat(s.dirfd, renameTemp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %v", renameTemp, err)
	}
	want := 0
	for _, p := range parts {
		want += len(p)
	}
	if want > 0 {
		n, err := unix.Writev(fd, parts)
		if err == nil && n != want {
			err = io.ErrShortWrite
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("write %s: %v", renameTemp, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %v", renameTemp, err)
	}
	if err := unix.Renameat(s.dirfd, renameTemp, s.dirfd, renameTarget); err != nil {
		return fmt.Errorf("rename %s: %v", renameTemp, err)
	}
	return nil
}

func (s *renameSender) close() error {
	if s.dirfd < 0 {
		return nil
	}
	err := unix.Close(s.dirfd)
	s.dirfd = -1
	return err
}

// readRenamed is the rename baseline's reader: on every inotify event naming the target
// (or every 10 ms, should events be missed) it reads the whole file and takes the records
// it has not seen yet.
func readRenamed(ctx context.Context, dir string, t *tally, ready func() error) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return err
	}
	if err := ready(); err != nil {
		return err
	}
	target := filepath.Join(dir, renameTarget)
	poll := time.NewTimer(time.Hour)
	var buf []byte
	for {
		buf, err = readWhole(target, buf)
		if err != nil {
			return err
		}
		for b := buf; len(b) >= frameHeader; {
			n := int(binary.LittleEndian.Uint32(b))
			if n > len(b)-frameHeader || n < MinSize {
				return fmt.Errorf("%s: bad frame of %d bytes", target, n)
			}
			p := b[frameHeader : frameHeader+n]
			b = b[frameHeader+n:]
			if binary.LittleEndian.Uint64(p[payloadSeq:]) < t.next {
				continue // seen in an earlier read
			}
			if err := t.take(p); err != nil {
				return err
			}
		}
		if t.done {
			return nil
		}
		poll.Reset(10 * time.Millisecond)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-poll.C:
				break wait
			case <-w.Errors:
				break wait // an overflow: read now
			case ev := <-w.Events:
				if ev.Name == target {
					break wait
				}
			}
		}
		// Coalesce what else is queued: one read sees all of it.
		for drained := false; !drained; {
			select {
			case <-w.Events:
			default:
				drained = true
			}
		}
	}
}

// readWhole reads the file at path into buf, reusing it.
func readWhole(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf[:0], &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(64<<10, cap(buf)))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
