package ramdisk

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// unmountAll unmounts every mount stacked at dir when the test ends.
func unmountAll(t *testing.T, dir string) {
	t.Cleanup(func() {
		for unix.Unmount(dir, 0) == nil {
		}
	})
}

// mountOrSkip mounts like Mount, and skips the test when the kernel refuses a process
// that is root but lacks CAP_SYS_ADMIN, unless FILERING_REQUIRE_ROOT is "1".
func mountOrSkip(t *testing.T, dir string, opts MountOptions) {
	t.Helper()
	unmountAll(t, dir)
	err := Mount(dir, opts)
	if errors.Is(err, ErrNotRoot) && os.Getenv("FILERING_REQUIRE_ROOT") != "1" {
		t.Skipf("cannot mount here (set FILERING_REQUIRE_ROOT=1 to fail instead): %v", err)
	}
	if err != nil {
		t.Fatalf("Mount(%q, %+v): %v", dir, opts, err)
	}
}

// Mount gives what MountUnit's Options= ask for, Check sees it, and a second Mount does
// nothing.
func TestMount(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "ring", "mnt") // Mount creates both levels
	opts := MountOptions{Size: 1 << 20, Mode: 0o750, User: "1234", Group: "5678"}
	mountOrSkip(t, dir, opts)

	info, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !info.TmpFS || info.FSType != "tmpfs" || info.MountPoint != dir || !info.Exists || info.Size != 1<<20 || info.Free != 1<<20 {
		t.Errorf("Check after Mount = %+v; want an empty 1MiB tmpfs mounted at %s", info, dir)
	}
	for _, o := range []string{"nosuid", "nodev", "noexec"} {
		if !strings.Contains(","+info.Options+",", ","+o+",") {
			t.Errorf("Options %q lack %s", info.Options, o)
		}
	}
	for _, o := range []string{"size=1024k", "mode=750", "uid=1234", "gid=5678"} {
		if !strings.Contains(","+info.SuperOptions+",", ","+o+",") {
			t.Errorf("SuperOptions %q lack %s", info.SuperOptions, o)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o750 || sys.Uid != 1234 || sys.Gid != 5678 {
		t.Errorf("mount root is %v %d:%d; want 0750 1234:5678", st.Mode(), sys.Uid, sys.Gid)
	}
	if err := info.Fits(256<<10, 2); err != nil {
		t.Errorf("2 segments of 256KiB do not fit 1MiB: %v", err)
	}
	if err := info.Fits(512<<10, 2); !errors.Is(err, ErrNoRoom) {
		t.Errorf("3 segments of 512KiB fit 1MiB: %v", err)
	}

	if err := Mount(dir, MountOptions{Size: 2 << 20}); !errors.Is(err, ErrMounted) {
		t.Errorf("second Mount = %v, want ErrMounted", err)
	}
	if again, err := Check(dir); err != nil || again.Size != 1<<20 {
		t.Errorf("after the second Mount, Check = %+v, %v; want the first tmpfs", again, err)
	}
}

// Mount resolves user and group names to numbers, as the kernel needs.
func TestMount_names(t *testing.T) {
	needRoot(t)
	u, err := user.Lookup("root")
	if err != nil {
		t.Skipf("no user root: %v", err)
	}
	g, err := user.LookupGroup("root")
	if err != nil {
		t.Skipf("no group root: %v", err)
	}
	dir := t.TempDir()
	mountOrSkip(t, dir, MountOptions{Size: 64 << 10, User: u.Username, Group: g.Name})
	info, err := Check(dir)
	if err != nil || !info.TmpFS || info.Size != 64<<10 || !strings.Contains(info.SuperOptions, "mode=750") {
		t.Errorf("Check = %+v, %v; want a 64KiB tmpfs with mode 750", info, err)
	}
	if err := Mount(dir, MountOptions{Size: 1 << 20, Group: "filering-no-such-group"}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Mount with an unknown group = %v, want ErrBadOptions", err)
	}
}

// mount(8), which systemd runs for a mount unit, accepts MountUnit's Options= with user
// and group names: the shipped run-ring.mount relies on it.
func TestMount_unitOptionsWithMount8(t *testing.T) {
	needRoot(t)
	mount8, err := exec.LookPath("mount")
	if err != nil {
		t.Skipf("no mount(8): %v", err)
	}
	nobody, err1 := user.Lookup("nobody")
	nogroup, err2 := user.LookupGroup("nogroup")
	if err1 != nil || err2 != nil {
		t.Skipf("no user nobody or group nogroup: %v, %v", err1, err2)
	}
	dir := t.TempDir()
	_, text, err := MountUnit(dir, MountOptions{Size: 2 << 20, Mode: 0o710, User: "nobody", Group: "nogroup"})
	if err != nil {
		t.Fatal(err)
	}
	options := strings.TrimPrefix(firstLine([]byte(text), "Options="), "Options=")
	unmountAll(t, dir)
	if out, err := exec.Command(mount8, "-t", "tmpfs", "-o", options, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o %s: %v\n%s", options, err, out)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o710 || nobody.Uid != strconv.Itoa(int(sys.Uid)) || nogroup.Gid != strconv.Itoa(int(sys.Gid)) {
		t.Errorf("mount root is %v %d:%d; want 0710 %s:%s", st.Mode(), sys.Uid, sys.Gid, nobody.Uid, nogroup.Gid)
	}
	if info, err := Check(dir); err != nil || !info.TmpFS || info.Size != 2<<20 {
		t.Errorf("Check = %+v, %v; want a 2MiB tmpfs", info, err)
	}
}

// Mount does not hide another filesystem mounted at the directory.
func TestMount_overOtherFilesystem(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	unmountAll(t, dir)
	if err := unix.Mount("ramfs", dir, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs: %v", err)
	}
	if info, err := Check(dir); err != nil || info.TmpFS || info.FSType != "ramfs" {
		t.Errorf("Check on ramfs = %+v, %v; want ramfs, not tmpfs", info, err)
	}
	if err := Mount(dir, MountOptions{Size: 1 << 20}); !errors.Is(err, ErrNotTmpfs) {
		t.Errorf("Mount over ramfs = %v, want ErrNotTmpfs", err)
	}
	if info, err := Check(dir); err != nil || info.FSType != "ramfs" {
		t.Errorf("after Mount, Check = %+v, %v; want ramfs still on top", info, err)
	}
}

func TestMount_notRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	dir := filepath.Join(t.TempDir(), "ring")
	if err := Mount(dir, MountOptions{Size: 1 << 20}); !errors.Is(err, ErrNotRoot) {
		t.Errorf("Mount as uid 1000 = %v, want ErrNotRoot", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Mount as uid 1000 created %s: %v", dir, err)
	}
}

func TestMount_badOptions(t *testing.T) {
	tests := []struct {
		name string
		opts MountOptions
	}{
		{"no size", MountOptions{}},
		{"negative size", MountOptions{Size: -4096}},
		{"setuid mode", MountOptions{Size: 1, Mode: os.ModeSetuid | 0o750}},
		{"option in group", MountOptions{Size: 1, Group: "0,exec"}},
		{"option in user", MountOptions{Size: 1, User: "root,suid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ring")
			if err := Mount(dir, tt.opts); !errors.Is(err, ErrBadOptions) {
				t.Errorf("Mount(%+v) = %v, want ErrBadOptions", tt.opts, err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Mount with bad options created %s: %v", dir, err)
			}
		})
	}
}

func TestKernelSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{1, "1"},
		{4097, "4097"},
		{1024, "1K"},
		{1536 << 10, "1536K"},
		{16 << 20, "16M"},
		{3 << 30, "3G"},
		{1 << 40, "1T"},
		{5 << 50, "5P"},
		{1 << 60, "1E"},
	}
	for _, tt := range tests {
		if got := kernelSize(tt.in); got != tt.want {
			t.Errorf("kernelSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
