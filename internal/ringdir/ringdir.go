// Package ringdir opens the files of a filering ring directory safely: every file is
// opened relative to a descriptor of the directory, never through a symbolic link, never
// outside the directory, and only if it is a regular file. It is shared by the producer
// and the readers.
package ringdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// ErrNoRing means the directory holds no manifest: no producer has created a ring there.
var ErrNoRing = errors.New("ringdir: no ring in this directory (no manifest)")

// Dir is an open ring directory. Its methods are safe for concurrent use.
type Dir struct {
	path string
	f    *os.File
}

// Open opens the ring directory at path. path itself must be a directory, not a symbolic
// link to one.
func Open(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
				return nil, fmt.Errorf("open ring %s: is a symbolic link; name the real directory", path)
			}
		}
		return nil, &os.PathError{Op: "open ring", Path: path, Err: err}
	}
	return &Dir{path: path, f: os.NewFile(uintptr(fd), path)}, nil
}

// Path returns the path the directory was opened with.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name inside the directory, for messages.
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Fd returns the directory's descriptor. It stays valid until Close.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

// checkName refuses names that could leave the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("invalid file name %q", name)
	}
	return nil
}

// OpenFile opens name in the directory with flag (unix.O_RDONLY, unix.O_RDWR, with
// unix.O_CREAT|unix.O_EXCL to create) and, when it creates the file, mode perm exactly:
// the mode is set with fchmod, so the umask does not change it. It refuses symbolic
// links and anything that is not a regular file, and never blocks on a FIFO.
func (d *Dir) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	fd, err := unix.Openat(d.Fd(), name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm.Perm()))
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = errors.New("is a symbolic link")
		}
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.Join(name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "stat", Path: d.Join(name), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: errors.New("not a regular file")}
	}
	if flag&unix.O_CREAT != 0 {
		if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
			f.Close()
			return nil, &os.PathError{Op: "chmod", Path: d.Join(name), Err: err}
		}
	}
	return f, nil
}

// ReadManifest reads and validates the manifest. It returns an error wrapping ErrNoRing
// when there is none.
func (d *Dir) ReadManifest() (*segment.Manifest, error) {
	f, err := d.OpenFile(segment.ManifestName, unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", d.path, ErrNoRing)
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, segment.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	m, err := segment.DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return m, nil
}

// Names lists the directory.
func (d *Dir) Names() ([]string, error) {
	// A fresh descriptor per listing: the shared one's offset must not be raced.
	fd, err := unix.Openat(d.Fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	return names, nil
}

// Rename renames oldname to newname inside the directory. With noreplace it fails with
// an error wrapping unix.EEXIST instead of replacing an existing newname.
func (d *Dir) Rename(oldname, newname string, noreplace bool) error {
	if err := checkName(oldname); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(oldname), New: d.Join(newname), Err: err}
	}
	if err := checkName(newname); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(oldname), New: d.Join(newname), Err: err}
	}
	var flags uint
	if noreplace {
		flags = unix.RENAME_NOREPLACE
	}
	if err := unix.Renameat2(d.Fd(), oldname, d.Fd(), newname, flags); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(oldname), New: d.Join(newname), Err: err}
	}
	return nil
}

// Remove unlinks name. A name that is already gone is not an error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	if err := unix.Unlinkat(d.Fd(), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// Map maps the first size bytes of f, shared, read-only or writable. It checks first
// that the file is at least size bytes long, so that reading the mapping cannot fault
// unless something truncates the file later.
func Map(f *os.File, size int64, writable bool) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	if st.Size < size {
		return nil, fmt.Errorf("%s: file is %d bytes, want %d: %w", f.Name(), st.Size, size, segment.ErrShort)
	}
	if size <= 0 || int64(int(size)) != size {
		return nil, fmt.Errorf("%s: cannot map %d bytes", f.Name(), size)
	}
	// Readers and the writer touch every page of a segment: fault them all in now, in
	// one system call, rather than one page fault per page on the record path.
	prot, flags := unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE
	if writable {
		prot |= unix.PROT_WRITE
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), prot, flags)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return b, nil
}

// Unmap releases a mapping made by Map.
func Unmap(b []byte) error {
	if b == nil {
		return nil
	}
	return unix.Munmap(b)
}

// FileSize returns the size of an open file.
func FileSize(f *os.File) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	return st.Size, nil
}

// Producer reports the pid of the producer that holds the ring's lock, or 0 when no
// producer runs. It needs only read access to the lock file.
func (d *Dir) Producer() (int, error) {
	f, err := d.OpenFile(segment.LockName, unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return 0, &os.PathError{Op: "query lock", Path: f.Name(), Err: err}
	}
	if lk.Type == unix.F_UNLCK {
		return 0, nil
	}
	return ReadPID(f), nil
}

// ReadPID reads the decimal pid at the start of a lock file; 0 if there is none. It reads
// at most 32 bytes.
func ReadPID(f *os.File) int {
	var buf [32]byte
	n, _ := f.ReadAt(buf[:], 0)
	pid := 0
	for _, c := range buf[:n] {
		if c < '0' || c > '9' || pid > 1<<30 {
			break
		}
		pid = pid*10 + int(c-'0')
	}
	return pid
}
