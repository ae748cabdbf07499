// Package ramdisk checks and prepares the tmpfs that holds filering rings.
//
// A ring lives in a directory such as /run/ring/NAME and must be on tmpfs: segments are
// written through mmap and read by many processes, and on a disk they would cost writes
// that nobody needs. [Check] tells what filesystem holds a directory and how much room
// it has, [Info.Fits] says whether a ring of a given shape fits there, [Mount] mounts a
// bounded tmpfs, and [MountUnit] writes the equivalent systemd mount unit. [Files] holds
// the systemd and tmpfiles files shipped for a board.
//
// [ParseSize] and [FormatSize] read and print byte sizes ("64KiB", "16M") for the whole
// filering command line.
//
// The package works on Linux only: it reads /proc/self/mountinfo and calls statfs(2) and
// mount(2). Its functions are safe for concurrent use, but two Mount calls racing on one
// directory may both mount, one tmpfs over the other.
package ramdisk

import "errors"

// Errors returned by this package, possibly wrapped; test with [errors.Is].
var (
	// ErrNotTmpfs reports a directory, or a mount point, that is not on tmpfs.
	ErrNotTmpfs = errors.New("ramdisk: not tmpfs")
	// ErrNoRoom reports that a ring does not fit in a filesystem's free space.
	ErrNoRoom = errors.New("ramdisk: no room")
	// ErrNotRoot reports that mounting needs privileges the process lacks.
	ErrNotRoot = errors.New("ramdisk: not root")
	// ErrMounted reports that a tmpfs is already mounted at the directory: nothing was done.
	ErrMounted = errors.New("ramdisk: already mounted")
	// ErrBadSize reports a size that ParseSize cannot read.
	ErrBadSize = errors.New("ramdisk: bad size")
	// ErrBadPath reports a mount directory that cannot be named or mounted safely.
	ErrBadPath = errors.New("ramdisk: bad path")
	// ErrBadOptions reports invalid MountOptions.
	ErrBadOptions = errors.New("ramdisk: bad mount options")
)
