package ramdisk

import (
	"embed"
	"io/fs"
)

//go:embed systemd
var files embed.FS

// Files returns the files shipped for a board, by name:
//
//   - run-ring.mount: mounts a 32 MiB tmpfs at /run/ring (see MountUnit);
//   - filering-produce@.service: runs one producer per ring, named by the instance;
//   - filering.conf: a tmpfiles.d(5) line that creates /run/ring for user filering;
//   - filering.sysusers: a sysusers.d(5) line that creates the filering user and group.
//
// DEPLOY.md in this package's directory says where each goes.
func Files() fs.FS {
	sub, err := fs.Sub(files, "systemd")
	if err != nil {
		panic(err) // "systemd" is a valid path: fs.Sub cannot fail
	}
	return sub
}
