package ramdisk

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountinfoPath is the kernel's table of the mounts this process sees.
const mountinfoPath = "/proc/self/mountinfo"

// Info describes the filesystem that holds a directory. Its JSON form is what
// `filering ramdisk check --json` prints.
type Info struct {
	// Path is the directory asked about, made absolute and clean.
	Path string `json:"path"`
	// Exists reports whether Path exists. If it does not, the fields below describe its
	// nearest existing parent, where the directory would be created.
	Exists bool `json:"exists"`
	// MountPoint is where the filesystem holding Path is mounted, symlinks resolved.
	MountPoint string `json:"mount_point"`
	// FSType is the filesystem type from /proc/self/mountinfo, such as "tmpfs" or "ext4".
	FSType string `json:"fs_type"`
	// TmpFS is true only for a real tmpfs; devtmpfs, ramfs and the rest are false.
	TmpFS bool `json:"tmpfs"`
	// Size is the filesystem's size in bytes.
	Size uint64 `json:"size"`
	// Free is the number of bytes an unprivileged writer can still use.
	Free uint64 `json:"free"`
	// Options are the mount point's options, such as "rw,nosuid,nodev,noexec,relatime".
	Options string `json:"options"`
	// SuperOptions are the filesystem's own options; for tmpfs "size=", "mode=", "uid=",
	// "gid=" when they differ from the default.
	SuperOptions string `json:"super_options"`
}

// Check describes the filesystem that holds dir. If dir does not exist yet, as for a
// ring that a producer will create, Check describes its nearest existing parent and sets
// Exists to false. Symlinks are resolved before the mount point is looked up.
//
// TmpFS needs both the statfs(2) magic of tmpfs and the type "tmpfs" in
// /proc/self/mountinfo: devtmpfs shares tmpfs's magic number. An error means dir, or a
// parent, could not be examined (or exists and is not a directory); a directory that is
// not on tmpfs is not an error.
func Check(dir string) (Info, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Info{}, fmt.Errorf("ramdisk: check %s: %w", dir, err)
	}
	info := Info{Path: abs}

	existing := abs
	for {
		st, err := os.Stat(existing)
		if err == nil {
			if !st.IsDir() {
				return info, fmt.Errorf("ramdisk: check %s: %w", existing, syscall.ENOTDIR)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || existing == "/" {
			return info, fmt.Errorf("ramdisk: check: %w", err)
		}
		existing = filepath.Dir(existing)
	}
	info.Exists = existing == abs

	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return info, fmt.Errorf("ramdisk: check: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(resolved, &st); err != nil {
		return info, fmt.Errorf("ramdisk: statfs %s: %w", resolved, err)
	}
	info.Size = uint64(st.Bsize) * st.Blocks
	info.Free = uint64(st.Bsize) * st.Bavail

	m, err := findMount(resolved)
	if err != nil {
		return info, err
	}
	info.MountPoint = m.point
	info.FSType = m.fsType
	info.Options = m.options
	info.SuperOptions = m.superOptions
	info.TmpFS = m.fsType == "tmpfs" && st.Type == unix.TMPFS_MAGIC
	return info, nil
}

// Fits reports whether a ring of segments segments of segmentSize bytes each fits in the
// free space i describes. The ring needs one segment more than it keeps, since a roll
// creates the new segment before it removes the oldest, and room for two copies of its
// manifest (the current one and the one being renamed over it) and its lock file.
//
// Free space counts whatever is already there, a running ring included: check before
// the ring's producer first starts. Fits returns nil if the ring fits, an error wrapping
// [ErrNoRoom] that gives the bytes needed and free if it does not, and another error if
// segmentSize or segments is not positive.
func (i Info) Fits(segmentSize int64, segments int) error {
	if segmentSize <= 0 || segments <= 0 {
		return fmt.Errorf("ramdisk: ring of %d segments of %d bytes: both must be positive",
			segments, segmentSize)
	}
	need := ringBytes(uint64(segmentSize), uint64(segments))
	if need <= i.Free {
		return nil
	}
	return fmt.Errorf("%w: %d segments of %s need %s (%d bytes) with the rolling segment "+
		"and manifest, but %s has %s (%d bytes) free",
		ErrNoRoom, segments, FormatSize(segmentSize), formatSize(need), need,
		i.Path, formatSize(i.Free), i.Free)
}

// ringBytes is the space a ring of n segments of size bytes needs (see Info.Fits),
// or math.MaxUint64 if that overflows.
func ringBytes(size, n uint64) uint64 {
	const (
		page        = 4096
		manifestMax = 1 << 20 // the format's limit on a manifest
		perSegment  = 128     // generous for one manifest entry
	)
	manifest := min(page+perSegment*n, manifestMax)
	hi, need := bits.Mul64(size, n+1)
	extra := 2*manifest + page
	if hi != 0 || need > math.MaxUint64-extra {
		return math.MaxUint64
	}
	return need + extra
}

// mount is one line of /proc/self/mountinfo, unescaped.
type mount struct {
	point        string
	fsType       string
	options      string
	superOptions string
}

// findMount returns the mount that holds path, which must be absolute, clean and free
// of symlinks.
func findMount(path string) (mount, error) {
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return mount{}, fmt.Errorf("ramdisk: read mount table: %w", err)
	}
	m, ok := containing(parseMountinfo(string(b)), path)
	if !ok {
		return mount{}, fmt.Errorf("ramdisk: no mount in %s holds %s", mountinfoPath, path)
	}
	return m, nil
}

// containing returns the mount whose mount point is the longest prefix of path, taking
// the last of equal ones: a later mount at the same point hides the earlier.
func containing(mounts []mount, path string) (mount, bool) {
	var best mount
	found := false
	for _, m := range mounts {
		if m.point != "/" && path != m.point && !strings.HasPrefix(path, m.point+"/") {
			continue
		}
		if !found || len(m.point) >= len(best.point) {
			best, found = m, true
		}
	}
	return best, found
}

// parseMountinfo reads the mount table in the format of proc(5):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// that is: ID, parent ID, major:minor, root, mount point, mount options, optional fields,
// a "-" separator, filesystem type, source and superblock options. Lines it cannot read
// are skipped.
func parseMountinfo(text string) []mount {
	var mounts []mount
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		m := mount{
			point:   unescapeOctal(f[4]),
			fsType:  unescapeOctal(f[sep+1]),
			options: f[5],
		}
		if sep+3 < len(f) {
			m.superOptions = unescapeOctal(f[sep+3])
		}
		if !strings.HasPrefix(m.point, "/") {
			continue
		}
		mounts = append(mounts, m)
	}
	return mounts
}

// unescapeOctal undoes the kernel's escaping of space, tab, newline and backslash in
// mountinfo fields as a backslash and three octal digits ("\040" for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && '0' <= s[i+1] && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isOctal reports whether c is an octal digit.
func isOctal(c byte) bool { return '0' <= c && c <= '7' }
