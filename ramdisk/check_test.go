package ramdisk

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// sampleMountinfo is a mount table as the kernel prints it, with a stacked /dev/shm, an
// escaped space and optional fields.
const sampleMountinfo = `23 26 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334448k,nr_inodes=3083612,mode=755
24 23 0:22 / /dev/shm rw,relatime shared:3 - tmpfs tmpfs rw,size=1024k
26 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw,discard
29 24 0:26 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=2048k
41 26 0:38 / /run/my\040ring rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,mode=750,uid=999,gid=999
42 26 0:39 / /run/ring rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=16384k,mode=750
`

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []mount
	}{
		{"empty", "", nil},
		{"one line", "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n",
			[]mount{{"/", "ext4", "rw,relatime", "rw,discard"}}},
		{"no trailing newline", "26 1 254:0 / / rw - ext4 /dev/vda rw",
			[]mount{{"/", "ext4", "rw", "rw"}}},
		{"optional fields", "26 1 254:0 / / rw shared:1 master:2 propagate_from:3 - ext4 /dev/vda rw\n",
			[]mount{{"/", "ext4", "rw", "rw"}}},
		{"escaped space, tab, newline, backslash", `1 1 0:1 / /a\040b\011c\012d\134e rw - tmpfs x\040y rw` + "\n",
			[]mount{{"/a b\tc\nd\\e", "tmpfs", "rw", "rw"}}},
		{"escaped fstype", `1 1 0:1 / /a rw - fuse.my\040fs x rw`,
			[]mount{{"/a", "fuse.my fs", "rw", "rw"}}},
		{"no super options", "1 1 0:1 / /a rw - tmpfs tmpfs\n",
			[]mount{{"/a", "tmpfs", "rw", ""}}},
		{"no source nor super options", "1 1 0:1 / /a rw - tmpfs\n",
			[]mount{{"/a", "tmpfs", "rw", ""}}},
		{"garbage lines skipped", "garbage\n\n1 2 3\n1 1 0:1 / /a rw tmpfs x rw\n1 1 0:1 / /a rw -\n - - - - - - -\n" +
			"1 1 0:1 / relative rw - tmpfs x rw\n1 1 0:1 / /ok rw - tmpfs x rw\n",
			[]mount{{"/ok", "tmpfs", "rw", "rw"}}},
		{"separator too early", "1 1 - / /a rw tmpfs x rw\n", nil},
		{"CRLF and extra blanks", "1  1 0:1 / /a rw - tmpfs x rw\r\n",
			[]mount{{"/a", "tmpfs", "rw", "rw"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseMountinfo(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseMountinfo(%q) =\n%q\nwant\n%q", tt.in, got, tt.want)
			}
		})
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/plain", "/plain"},
		{`/a\040b`, "/a b"},
		{`\134`, `\`},
		{`\040\040`, "  "},
		{`/a\04`, `/a\04`},   // too short: kept
		{`/a\08x`, `/a\08x`}, // not octal: kept
		{`/a\477`, `/a\477`}, // above 0377: kept
		{`/a\\040`, `/a\ `},  // the first backslash is not an escape
		{`end\`, `end\`},
		{"/ü\\040", "/ü "},
	}
	for _, tt := range tests {
		if got := unescapeOctal(tt.in); got != tt.want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestContaining(t *testing.T) {
	mounts := parseMountinfo(sampleMountinfo)
	tests := []struct {
		path      string
		wantPoint string
		wantSuper string
	}{
		{"/", "/", "rw,discard"},
		{"/home/x", "/", "rw,discard"},
		{"/dev", "/dev", "rw,size=12334448k,nr_inodes=3083612,mode=755"},
		{"/dev/null", "/dev", "rw,size=12334448k,nr_inodes=3083612,mode=755"},
		{"/dev/shm", "/dev/shm", "rw,size=2048k"}, // the later, stacked mount wins
		{"/dev/shm/ring/x", "/dev/shm", "rw,size=2048k"},
		{"/dev/shmx", "/dev", "rw,size=12334448k,nr_inodes=3083612,mode=755"},
		{"/run/my ring/a", "/run/my ring", "rw,size=16384k,mode=750,uid=999,gid=999"},
		{"/run/my", "/", "rw,discard"},
		{"/run/ring", "/run/ring", "rw,size=16384k,mode=750"},
		{"/run/ring2", "/", "rw,discard"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			m, ok := containing(mounts, tt.path)
			if !ok || m.point != tt.wantPoint || m.superOptions != tt.wantSuper {
				t.Errorf("containing(%q) = %+v, %v; want point %q with %q", tt.path, m, ok, tt.wantPoint, tt.wantSuper)
			}
		})
	}
	if m, ok := containing(parseMountinfo("1 1 0:1 / /a rw - tmpfs x rw"), "/b"); ok {
		t.Errorf("containing without a root mount found %+v", m)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(sampleMountinfo)
	f.Add(`1 1 0:1 / /a\040b rw - tmpfs x rw`)
	f.Add("1 1 - - - - - - -\n\\")
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range parseMountinfo(s) {
			if !strings.HasPrefix(m.point, "/") {
				t.Fatalf("mount point %q is not absolute", m.point)
			}
			if m.fsType == "" {
				t.Fatalf("mount at %q has no type", m.point)
			}
		}
	})
}

// mountinfoHas reports whether this process's mount table has a mount of fsType at
// point, read with a plain string search rather than the parser under test.
func mountinfoHas(t *testing.T, point, fsType string) bool {
	t.Helper()
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == point && strings.Contains(line, " - "+fsType+" ") {
			return true
		}
	}
	return false
}

func TestCheck(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(wd, &st); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	tests := []struct {
		name       string
		dir        string
		skip       string // why to skip; "" runs the case
		wantExists bool
		wantPoint  string // "" skips this check
		wantType   string // "" skips this check
		wantTmpFS  bool
	}{
		{name: "/dev/shm is tmpfs", dir: "/dev/shm", wantExists: true, wantPoint: "/dev/shm", wantType: "tmpfs", wantTmpFS: true,
			skip: skipUnless(mountinfoHas(t, "/dev/shm", "tmpfs"), "no tmpfs at /dev/shm")},
		{name: "/dev is devtmpfs, not tmpfs", dir: "/dev", wantExists: true, wantPoint: "/dev", wantType: "devtmpfs",
			skip: skipUnless(mountinfoHas(t, "/dev", "devtmpfs"), "no devtmpfs at /dev")},
		{name: "missing dir under /dev/shm", dir: "/dev/shm/filering-no-such/ring", wantPoint: "/dev/shm", wantType: "tmpfs", wantTmpFS: true,
			skip: skipUnless(mountinfoHas(t, "/dev/shm", "tmpfs"), "no tmpfs at /dev/shm")},
		{name: "package dir is on disk", dir: ".", wantExists: true,
			skip: skipUnless(st.Type != unix.TMPFS_MAGIC, "the source tree is on tmpfs")},
		{name: "missing dir in temp dir", dir: filepath.Join(tmp, "a", "b")},
		{name: "temp dir", dir: tmp, wantExists: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			info, err := Check(tt.dir)
			if err != nil {
				t.Fatalf("Check(%q): %v", tt.dir, err)
			}
			abs, _ := filepath.Abs(tt.dir)
			if info.Path != abs || info.Exists != tt.wantExists || info.TmpFS != tt.wantTmpFS {
				t.Errorf("Check(%q) = %+v; want Path %q, Exists %v, TmpFS %v", tt.dir, info, abs, tt.wantExists, tt.wantTmpFS)
			}
			if tt.wantPoint != "" && info.MountPoint != tt.wantPoint {
				t.Errorf("MountPoint = %q, want %q", info.MountPoint, tt.wantPoint)
			}
			if tt.wantType != "" && info.FSType != tt.wantType {
				t.Errorf("FSType = %q, want %q", info.FSType, tt.wantType)
			}
			if info.Size == 0 || info.Free > info.Size || info.Options == "" {
				t.Errorf("Check(%q) = %+v: want 0 < Free <= Size and options", tt.dir, info)
			}
		})
	}

	// Check agrees with statfs on the package dir and on its own temp dir.
	for _, dir := range []string{wd, tmp} {
		info, err := Check(dir)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != unix.TMPFS_MAGIC && (info.TmpFS || info.FSType == "tmpfs") {
			t.Errorf("Check(%q) = %+v, but statfs says magic %#x, not tmpfs", dir, info, st.Type)
		}
		if info.Size != uint64(st.Bsize)*st.Blocks {
			t.Errorf("Check(%q).Size = %d, statfs says %d", dir, info.Size, uint64(st.Bsize)*st.Blocks)
		}
	}
}

func skipUnless(ok bool, why string) string {
	if ok {
		return ""
	}
	return why
}

func TestCheck_errors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "below")} {
		if info, err := Check(dir); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("Check(%q) = %+v, %v; want ENOTDIR", dir, info, err)
		}
	}
}

func TestCheck_symlink(t *testing.T) {
	if !mountinfoHas(t, "/dev/shm", "tmpfs") {
		t.Skip("no tmpfs at /dev/shm")
	}
	link := filepath.Join(t.TempDir(), "ring")
	if err := os.Symlink("/dev/shm", link); err != nil {
		t.Fatal(err)
	}
	info, err := Check(filepath.Join(link, "not-yet"))
	if err != nil || !info.TmpFS || info.MountPoint != "/dev/shm" || info.Exists {
		t.Errorf("Check through a symlink to /dev/shm = %+v, %v; want TmpFS at /dev/shm, not existing", info, err)
	}
}

func TestInfoFits(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		free     uint64
		size     int64
		segments int
		wantErr  error // nil, ErrNoRoom, or errBad for a non-sentinel error
	}{
		{"fits with room to spare", 64 * mib, mib, 16, nil},
		{"exactly the ring plus margin", 17*mib + 2*(4096+128*16) + 4096, mib, 16, nil},
		{"one byte short", 17*mib + 2*(4096+128*16) + 4095, mib, 16, ErrNoRoom},
		{"16 segments never fit 16MiB", 16 * mib, mib, 16, ErrNoRoom},
		{"15 small segments fit 16MiB", 16 * mib, 512 << 10, 15, nil},
		{"manifest margin is capped", 1 << 40, 4096, 65536, nil},
		{"no free space", 0, 4096, 2, ErrNoRoom},
		{"overflow means no room", math.MaxUint64 - 1, math.MaxInt64, 4, ErrNoRoom},
		{"zero segments", 64 * mib, mib, 0, errBad},
		{"negative segment size", 64 * mib, -1, 4, errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Info{Path: "/run/ring", Free: tt.free}.Fits(tt.size, tt.segments)
			switch {
			case tt.wantErr == nil && err != nil,
				tt.wantErr == errBad && (err == nil || errors.Is(err, ErrNoRoom)),
				tt.wantErr == ErrNoRoom && !errors.Is(err, ErrNoRoom):
				t.Fatalf("Fits(%d, %d) with %d free = %v; want %v", tt.size, tt.segments, tt.free, err, tt.wantErr)
			}
		})
	}
}

// errBad stands for an error that wraps no sentinel in TestInfoFits.
var errBad = errors.New("bad arguments")

func TestInfoFits_message(t *testing.T) {
	err := Info{Path: "/run/ring", Free: 16 << 20}.Fits(1<<20, 16)
	want := "ramdisk: no room: 16 segments of 1MiB need 17.0MiB (17842176 bytes) with the rolling segment " +
		"and manifest, but /run/ring has 16MiB (16777216 bytes) free"
	if err == nil || err.Error() != want {
		t.Errorf("Fits error = %v\nwant %s", err, want)
	}
}
