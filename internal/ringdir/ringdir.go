// Package ringdir opens the files of a filering ring directory safely: every file is
// opened relative to a descriptor of the directory, never through a symbolic link, never
// outside the directory, and only if it is a regular file. It is shared by the producer
// and the readers.
package ringdir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// ErrNoRing means the directory holds no manifest: no producer has created a ring there.
var ErrNoRing = errors.New("ringdir: no ring in this directory (no manifest)")

// Dir is an open ring directory. Its methods are safe for concurrent use.
type Dir struct {
	path string
	f    *os.File
	// opens and manifests count OpenFile calls and manifest reads: see Counts.
	opens, manifests atomic.Int64
}

// Counts is how much work a Dir did: files it opened (or tried to) and manifests it
// read. Tests use it to check that readers do work linear in what a ring lists.
type Counts struct {
	Opens, Manifests int64
}

// Counts returns the work the Dir has done so far.
func (d *Dir) Counts() Counts {
	return Counts{Opens: d.opens.Load(), Manifests: d.manifests.Load()}
}

// Open opens the ring directory at path. path itself must be a directory, not a symbolic
// link to one.
func Open(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
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
	d.opens.Add(1)
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

// pathFirst is an *os.PathError reported as "PATH: what", the way every reader reports
// what is wrong with a file of a ring.
type pathFirst struct{ *os.PathError }

func (e *pathFirst) Error() string { return e.Path + ": " + e.Err.Error() }

func (e *pathFirst) Unwrap() error { return e.PathError }

// ReadManifest reads and validates the manifest. It returns an error wrapping ErrNoRing
// when there is none. Its errors name DIR/manifest first.
func (d *Dir) ReadManifest() (*segment.Manifest, error) {
	d.manifests.Add(1)
	f, err := d.OpenFile(segment.ManifestName, unix.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", d.path, ErrNoRing)
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &pathFirst{pe}
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
//
// When size is a multiple of the huge page size, Map places the mapping on a huge page
// boundary. A writable mapping (the producer's) is then backed with huge pages
// (MADV_COLLAPSE, Linux 6.1 and later), and, when that is refused or size is not such a
// multiple, every page is faulted in up front. See Huge.
//
// A read-only mapping is only mapped: nothing is faulted in, collapsed or allocated, so
// that what it costs is what its user touches. A reader that reads a segment from one end
// to the other uses a View, which prepares and releases the mapping a window at a time.
func Map(f *os.File, size int64, writable bool) ([]byte, error) {
	return mapFile(f, size, writable, true)
}

// MapWritten maps the first size bytes of f writable, as Map does for a producer, for a
// file whose pages are in place already: a removed segment's file, reused. Its pages are
// faulted in (MADV_POPULATE_WRITE), huge where the file's are, but huge pages are not asked
// for again: MADV_COLLAPSE on pages that are huge already still costs the kernel a
// round of every CPU's page lists.
func MapWritten(f *os.File, size int64) ([]byte, error) {
	return mapFile(f, size, true, false)
}

func mapFile(f *os.File, size int64, writable, collapse bool) ([]byte, error) {
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
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	if Huge(size) {
		// Where the address space is short (32 bits), the aligned mapping may not
		// find room; the plain mapping below may still.
		if b, err := mapAligned(int(f.Fd()), uintptr(size), uintptr(hugePageSize()), prot); err == nil {
			if writable && !collapse {
				unix.Madvise(b, unix.MADV_POPULATE_WRITE)
			} else if writable && unix.Madvise(b, unix.MADV_COLLAPSE) != nil {
				// Small pages, then: fault them in now, as MAP_POPULATE does (a
				// failure only leaves the faults to the first writes).
				unix.Madvise(b, unix.MADV_POPULATE_READ)
			}
			return b, nil
		}
	}
	flags := unix.MAP_SHARED
	if writable {
		// The writer touches every page of a segment: fault them all in now, in one
		// system call, rather than one page fault per page on the record path.
		flags |= unix.MAP_POPULATE
	}
	p, err := unix.MmapPtr(int(f.Fd()), 0, nil, uintptr(size), prot, flags)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return unsafe.Slice((*byte)(p), size), nil
}

// ReadWindow is the unit in which a View prepares a segment ahead of its reader and
// releases what lies behind it: a multiple of the huge page size.
const ReadWindow = 4 << 20

// View is a read-only shared mapping of a segment file for a reader that reads it in
// order, from its start or from an offset it seeks to. It keeps what the mapping holds
// resident bounded by three windows (ReadWindow) whatever the size of the file:
//
//   - Advance, called with the offset the reader is about to read from, before it reads
//     there, releases the pages of the windows behind it (MADV_DONTNEED: the file keeps
//     them, the process's page tables drop them) and prepares the window it is in and
//     the next, so that a record that crosses into the next window finds it prepared;
//   - preparing a window means asking for huge pages for it (MADV_COLLAPSE) when the
//     mapping is on a huge page boundary, or faulting its pages in (MADV_POPULATE_READ)
//     otherwise: the fast path of docs/FORMAT.md, "Reading fast". It is done only for a
//     file whose every byte is allocated (st_blocks), because on tmpfs either call would
//     otherwise allocate memory to fill the file's holes: a damaged or hostile segment
//     whose header claims 1 GiB of sparse file costs a reader nothing beyond the pages it
//     reads. Once the kernel has refused to collapse a read-only mapping, no View in this
//     process asks again (the kernel would have to copy the file into free huge pages,
//     which is what fails where memory is short or fragmented).
//
// The first window, which holds the header that readers load on every scan, is never
// released. The methods of a View are not safe for concurrent use. Its bytes may be read
// from any goroutine until Close; a page released by Advance or Release is faulted in
// again when read.
type View struct {
	b     []byte
	fast  bool // the file was fully allocated when mapped: windows are prepared
	huge  bool // the mapping is on a huge page boundary
	next  int  // Advance has nothing to do below this offset
	kept  int  // the pages from ReadWindow up to here may still be resident
	ready int  // the windows below this offset were prepared
}

// MapView maps the first size bytes of f read-only for a reader. Like Map, it checks
// that the file holds size bytes; it faults nothing in.
func MapView(f *os.File, size int64) (*View, error) {
	b, err := Map(f, size, false)
	if err != nil {
		return nil, err
	}
	v := &View{b: b, huge: Huge(size) && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(hugePageSize()) == 0}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil && st.Blocks >= 0 && st.Blocks >= (size+511)/512 {
		v.fast = true
	}
	return v, nil
}

// Bytes returns the mapping.
func (v *View) Bytes() []byte { return v.b }

// Advance tells the View that its reader has reached offset off. It costs one comparison
// except when off enters another window.
func (v *View) Advance(off int) {
	if off >= v.next {
		v.advance(off)
	}
}

func (v *View) advance(off int) {
	if off >= len(v.b) {
		off = len(v.b) - 1
	}
	w := off &^ (ReadWindow - 1)
	if lo := max(v.kept, ReadWindow); w > lo {
		unix.Madvise(v.b[lo:w], unix.MADV_DONTNEED)
	}
	v.kept = max(v.kept, w)
	if end := min(w+2*ReadWindow, len(v.b)); v.fast && end > max(v.ready, w) {
		prepare(v.b[max(v.ready, w):end], v.huge)
		v.ready = end
	}
	v.next = min(w+ReadWindow, len(v.b))
}

// prepare asks for huge pages for b, or faults it in; failures only leave the faults to
// the first reads.
func prepare(b []byte, huge bool) {
	if huge && !collapseRefused.Load() {
		if unix.Madvise(b, unix.MADV_COLLAPSE) == nil {
			return
		}
		collapseRefused.Store(true)
	}
	unix.Madvise(b, unix.MADV_POPULATE_READ)
}

// Release drops every page of the mapping from the process's page tables, as a reader
// that is done with the segment for now but keeps it open does. A later Advance prepares
// the window it enters again.
func (v *View) Release() {
	if len(v.b) > 0 {
		unix.Madvise(v.b, unix.MADV_DONTNEED)
	}
	v.next, v.kept, v.ready = 0, 0, 0
}

// Close unmaps the View. Its bytes must not be used afterwards.
func (v *View) Close() error {
	if v == nil {
		return nil
	}
	b := v.b
	v.b = nil
	return Unmap(b)
}

// mapAligned maps length bytes of fd, shared, at an address that is a multiple of align:
// it reserves length+align bytes of address space, maps the file over the aligned part
// and gives back the rest.
func mapAligned(fd int, length, align uintptr, prot int) ([]byte, error) {
	res, err := unix.MmapPtr(-1, 0, nil, length+align, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	pad := (align - uintptr(res)%align) % align
	p, err := unix.MmapPtr(fd, 0, unsafe.Add(res, pad), length, prot, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		unix.MunmapPtr(res, length+align)
		return nil, err
	}
	if pad > 0 {
		unix.MunmapPtr(res, pad)
	}
	if rest := align - pad; rest > 0 {
		unix.MunmapPtr(unsafe.Add(p, length), rest)
	}
	return unsafe.Slice((*byte)(p), length), nil
}

// Huge reports whether Map asks for huge pages for a mapping of size bytes: whether the
// kernel has transparent huge pages and size is a multiple of their size (2 MiB on
// amd64 and on arm64 with 4 KiB pages). A segment on huge pages takes a few page table
// entries rather than one per 4 KiB, which makes mapping it, and the first write to
// each of its pages, much cheaper.
func Huge(size int64) bool {
	hp := hugePageSize()
	return hp > 0 && size%hp == 0
}

// collapseRefused is set once the kernel has refused huge pages for a View.
var collapseRefused atomic.Bool

var hugePageSize = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n&(n-1) != 0 || n > 1<<30 {
		return 0
	}
	return n
})

// HugeMapped reports how much of this process's mappings of files in dir the kernel
// maps with huge pages: the bytes of those mappings and the bytes among them mapped with
// huge pages (Size and ShmemPmdMapped in /proc/self/smaps). Files whose names start with
// a dot (segments still being prepared) are left out.
func HugeMapped(dir string) (size, huge int64, err error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			// A mapping's first line: range, permissions, offset, device, inode, path.
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], prefix) &&
				!strings.HasPrefix(fields[5][len(prefix):], ".")
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Size:":
			size += n << 10
		case "ShmemPmdMapped:":
			huge += n << 10
		}
	}
	return size, huge, sc.Err()
}

// SeedHuge prepares a new, empty file of size bytes to be mapped on huge pages by Map:
// it sets the size and allocates the first 4 KiB of every huge page, which lets the
// kernel build the huge pages from zeroes rather than from 512 allocated small pages.
// It allocates nothing more; failing to allocate is left to the caller's allocation of
// the whole file to report.
func SeedHuge(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	hp := hugePageSize()
	for off := int64(0); hp > 0 && off < size; off += hp {
		if unix.Fallocate(int(f.Fd()), 0, off, 4096) != nil {
			break
		}
	}
	return nil
}

// Unmap releases a mapping made by Map.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
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
