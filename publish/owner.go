package publish

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrUnsafe means the ring directory, or a file in it, could be changed by a user other
// than the producer's: records read from it could have been written by anyone.
var ErrUnsafe = errors.New("publish: ring writable by another user")

// checkSafe refuses a ring directory, or a file in it, that another user owns or that
// its group or others may write. Anyone can create a directory in /dev/shm or /tmp
// before the producer does; adopting it would let its owner inject, replace or delete
// records. st is the fstat of the open directory or an lstat of a file in it.
func checkSafe(path string, st *unix.Stat_t) error {
	euid := uint32(os.Geteuid())
	switch {
	case st.Uid != euid:
		return fmt.Errorf("%w: %s is owned by uid %d, the producer runs as uid %d; remove it, or run the producer as its owner",
			ErrUnsafe, path, st.Uid, euid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o, writable by group or others; only the producer may write a ring (chmod go-w %s)",
			ErrUnsafe, path, st.Mode&0o7777, path)
	}
	return nil
}

// checkDir checks the open ring directory with checkSafe.
func (w *Writer) checkDir() error {
	var st unix.Stat_t
	if err := unix.Fstat(w.dir.Fd(), &st); err != nil {
		return &os.PathError{Op: "stat", Path: w.dir.Path(), Err: err}
	}
	return checkSafe(w.dir.Path(), &st)
}

// checkFile checks the file name in the ring directory with checkSafe; a name that is
// gone is no concern.
func (w *Writer) checkFile(name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(w.dir.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == unix.ENOENT:
		return nil
	case err != nil:
		return &os.PathError{Op: "stat", Path: w.dir.Join(name), Err: err}
	}
	return checkSafe(w.dir.Join(name), &st)
}

// checkFiles checks names, the listing of the ring directory, with checkFile.
func (w *Writer) checkFiles(names []string) error {
	for _, name := range names {
		if err := w.checkFile(name); err != nil {
			return err
		}
	}
	return nil
}
