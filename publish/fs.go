package publish

import (
	"os"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
)

// fileSystem is the seam through which the Writer changes the ring directory after it
// has opened it: every write, allocation, rename and unlink goes through it. Tests
// replace it to inject faults.
type fileSystem interface {
	// create creates name exclusively, read-write, with mode perm exactly.
	create(name string, perm os.FileMode) (*os.File, error)
	// allocate allocates size bytes of f.
	allocate(f *os.File, size int64) error
	// rename renames oldname to newname, failing if newname exists.
	rename(oldname, newname string) error
	// remove unlinks name; a missing name is not an error.
	remove(name string) error
	// replace atomically replaces name with a file holding data, with mode perm.
	replace(name string, data []byte, perm os.FileMode) error
}

// osFS is the real file system, below one ring directory.
type osFS struct {
	dir  *ringdir.Dir
	root *os.Root
}

func (fs osFS) create(name string, perm os.FileMode) (*os.File, error) {
	return fs.dir.OpenFile(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, perm)
}

func (fs osFS) allocate(f *os.File, size int64) error {
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return &os.PathError{Op: "allocate", Path: f.Name(), Err: err}
	}
	return nil
}

func (fs osFS) rename(oldname, newname string) error { return fs.dir.Rename(oldname, newname, true) }

func (fs osFS) remove(name string) error { return fs.dir.Remove(name) }

// replace writes a temporary file (its name starts with a dot) in the ring directory and
// renames it over name, with renameio.
func (fs osFS) replace(name string, data []byte, perm os.FileMode) error {
	return renameio.WriteFile(name, data, perm, renameio.WithRoot(fs.root), renameio.WithStaticPermissions(perm))
}
