package ramdisk

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultMode is the permission of a tmpfs root when MountOptions.Mode is zero: the
// owner writes rings, its group (readers such as a web server) reads them.
const DefaultMode os.FileMode = 0o750

// mountFlags are the flags of every tmpfs this package mounts: rings hold data, never
// programs or devices.
const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// MountOptions describe a tmpfs for rings, for Mount and MountUnit.
type MountOptions struct {
	// Size caps the tmpfs in bytes and must be positive; the kernel rounds it up to
	// whole pages. Memory is used only as files fill it.
	Size int64
	// Mode is the permission of the tmpfs root; zero means DefaultMode. Only
	// permission bits (0o777) are allowed.
	Mode os.FileMode
	// User owns the tmpfs root: a user name or a numeric uid. Empty means root.
	User string
	// Group is the group of the tmpfs root: a group name or a numeric gid. Empty means
	// root's group.
	Group string
}

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// Mount mounts a tmpfs at dir with opts and the flags nosuid, nodev and noexec, creating
// dir (mode 0755) and its parents if absent. User and Group names are resolved to
// numbers here, since the kernel takes only numbers.
//
// If a tmpfs is already mounted exactly at dir, Mount does nothing and returns an error
// wrapping [ErrMounted]; it does not compare that tmpfs's size or mode with opts ([Check]
// shows them). If another filesystem is mounted exactly at dir, Mount refuses to hide it
// and returns an error wrapping [ErrNotTmpfs]. Without root, or when the kernel answers
// EPERM (a container without CAP_SYS_ADMIN), the error wraps [ErrNotRoot]. Invalid opts
// give an error wrapping [ErrBadOptions].
func Mount(dir string, opts MountOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("ramdisk: mount %s: %w", dir, err)
	}
	if geteuid() != 0 {
		return fmt.Errorf("%w: mounting a tmpfs at %s needs root", ErrNotRoot, abs)
	}
	uid, err := resolveID(opts.User, func(name string) (string, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
	if err != nil {
		return err
	}
	gid, err := resolveID(opts.Group, func(name string) (string, error) {
		g, err := user.LookupGroup(name)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("ramdisk: create mount point: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("ramdisk: mount %s: %w", abs, err)
	}
	m, err := findMount(resolved)
	if err != nil {
		return err
	}
	if m.point == resolved {
		if m.fsType == "tmpfs" {
			return fmt.Errorf("%w: tmpfs at %s (%s)", ErrMounted, resolved, m.superOptions)
		}
		return fmt.Errorf("%w: %s is already a mount point of %s; not hiding it",
			ErrNotTmpfs, resolved, m.fsType)
	}

	data := opts.data(uid, gid)
	if err := unix.Mount("tmpfs", resolved, "tmpfs", mountFlags, data); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: mount tmpfs at %s: %w", ErrNotRoot, resolved, err)
		}
		return fmt.Errorf("ramdisk: mount tmpfs at %s with %s: %w", resolved, data, err)
	}
	return nil
}

// validate checks opts for Mount and MountUnit.
func (o MountOptions) validate() error {
	if o.Size <= 0 {
		return fmt.Errorf("%w: size must be positive, not %d", ErrBadOptions, o.Size)
	}
	if o.Mode&^os.ModePerm != 0 {
		return fmt.Errorf("%w: mode %#o has more than permission bits", ErrBadOptions, uint32(o.Mode))
	}
	for _, id := range []struct{ what, name string }{{"user", o.User}, {"group", o.Group}} {
		if id.name != "" && !validIDName(id.name) {
			return fmt.Errorf("%w: %s %q: want a name of letters, digits, '_', '.', '-', or a number",
				ErrBadOptions, id.what, id.name)
		}
	}
	return nil
}

// validIDName reports whether s is a user or group name, or number, that is safe inside
// mount options: no ',', '=' or space can smuggle in another option.
func validIDName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// resolveID returns a numeric id for a user or group given as a name or a number, or ""
// for "".
func resolveID(name string, lookup func(string) (string, error)) (string, error) {
	if name == "" {
		return "", nil
	}
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		return name, nil
	}
	id, err := lookup(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	return id, nil
}

// data is the tmpfs option string for opts, with uid and gid as given ("" to leave
// them out): "mode=0750,size=16M,uid=...,gid=...".
func (o MountOptions) data(uid, gid string) string {
	mode := o.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	s := []string{fmt.Sprintf("mode=%04o", uint32(mode)), "size=" + kernelSize(o.Size)}
	if uid != "" {
		s = append(s, "uid="+uid)
	}
	if gid != "" {
		s = append(s, "gid="+gid)
	}
	return strings.Join(s, ",")
}

// kernelSize prints n bytes as tmpfs's size= option reads it: with the largest of the
// kernel's suffixes K, M, G, T, P, E that divides n exactly, or as plain bytes.
func kernelSize(n int64) string {
	for _, su := range sizeUnits {
		if u := int64(su.bytes); n%u == 0 {
			return strconv.FormatInt(n/u, 10) + strings.ToUpper(su.short)
		}
	}
	return strconv.FormatInt(n, 10)
}
