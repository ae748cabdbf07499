package forward

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is held by the one forwarder of a ring to a subject. It lives in a lock directory
// of the forwarder's host (never in the ring directory, which only the producer writes):
// a file named after the ring's path, the stream and the subject, locked with an open
// file description lock for as long as the forwarder runs and released by the kernel
// when it exits, however it exits.
type Lock struct {
	f    *os.File
	path string
}

// DefaultLockDir returns where forwarders keep their locks unless told otherwise:
// /run/filering for root, else $XDG_RUNTIME_DIR/filering, else a directory for the
// user under the system's temporary directory.
func DefaultLockDir() string {
	if os.Geteuid() == 0 {
		return "/run/filering"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "filering")
	}
	return filepath.Join(os.TempDir(), "filering-"+strconv.Itoa(os.Geteuid()))
}

// ErrLocked means another forwarder holds the lock.
var ErrLocked = errors.New("another forwarder is running")

// AcquireLock takes the lock for forwarding the ring at dir to subject of stream, in
// lockDir (created, mode 0700, when missing). It fails with an error wrapping ErrLocked,
// naming the other forwarder's pid, when another forwarder holds it.
func AcquireLock(lockDir, dir, stream, subject string) (*Lock, error) {
	ring, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(ring); err == nil {
		ring = real
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	fi, err := os.Lstat(lockDir)
	if err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return nil, fmt.Errorf("lock directory %s: not a directory, or one that anyone may write", lockDir)
	}
	key := sha256.Sum256([]byte(ring + "\x00" + stream + "\x00" + subject))
	path := filepath.Join(lockDir, "forward-"+hex.EncodeToString(key[:12])+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("lock %s: not a regular file", path)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			b := make([]byte, 512)
			n, _ := f.ReadAt(b, 0)
			who := strings.TrimSpace(string(b[:n]))
			if who == "" {
				who = "a forwarder"
			}
			return nil, fmt.Errorf("%w: %s already forwards %s to %s of stream %s (lock %s)", ErrLocked, who, dir, subject, stream, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Who holds it, for the message a second forwarder prints.
	info := fmt.Sprintf("pid %d", os.Getpid())
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(info+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// Path returns the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release releases the lock. The file stays, as the producer's lock file does.
func (l *Lock) Release() error { return l.f.Close() }
