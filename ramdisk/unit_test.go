package ramdisk

import (
	"bytes"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

// escapeTests are clean absolute paths and their systemd unit names without suffix.
var escapeTests = []struct{ path, want string }{
	{"/", "-"},
	{"/run/ring", "run-ring"},
	{"/run/ring/", "run-ring"},
	{"/run/ring-1", `run-ring\x2d1`},
	{"/run/a-b-c", `run-a\x2db\x2dc`},
	{"/run/my ring", `run-my\x20ring`},
	{"/run/ünï", `run-\xc3\xbcn\xc3\xaf`},
	{"/srv/环", `srv-\xe7\x8e\xaf`},
	{"/.hidden", `\x2ehidden`},
	{"/run/.hidden", "run-.hidden"},
	{"/run/a.b.", "run-a.b."},
	{"/a:b_c.d", "a:b_c.d"},
	{"/A/Z/0/9", "A-Z-0-9"},
	{"/run/x~y+z@w", `run-x\x7ey\x2bz\x40w`},
	{`/a\b`, `a\x5cb`},
	{"/a%b", `a\x25b`},
	{"/a\x01b", `a\x01b`},
	{"/a\x7fb", `a\x7fb`},
	{"/a\xffb", `a\xffb`},
}

func TestEscapePath(t *testing.T) {
	for _, tt := range escapeTests {
		if got := escapePath(tt.path); got != tt.want {
			t.Errorf("escapePath(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// The escaping matches systemd's own, including for paths collapsed by systemd-escape.
func TestEscapePath_systemdEscape(t *testing.T) {
	tool := needTool(t, "systemd-escape")
	paths := []string{"//", "/run//ring//", "///run/ring"}
	for _, tt := range escapeTests {
		paths = append(paths, tt.path)
	}
	for _, p := range paths {
		out, err := exec.Command(tool, "--path", "--suffix=mount", "--", p).Output()
		if err != nil {
			t.Errorf("systemd-escape %q: %v", p, err)
			continue
		}
		want := strings.TrimSuffix(string(out), "\n")
		clean, err := cleanUnitPath(p)
		if err != nil {
			clean = p // "/" and paths MountUnit refuses: compare the escaping alone
		}
		got := escapePath(clean) + ".mount"
		if got != want {
			t.Errorf("path %q: unit name %q, systemd-escape says %q", p, got, want)
		}
	}
}

func TestMountUnit(t *testing.T) {
	name, text, err := MountUnit("/run/my ring-1%", MountOptions{Size: 1 << 40, User: "filering", Group: "999"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `[Unit]
Description=filering ring tmpfs at /run/my ring-1%%
DefaultDependencies=no
Conflicts=umount.target
Before=local-fs.target umount.target
After=systemd-sysusers.service

[Mount]
What=tmpfs
Where=/run/my ring-1%%
Type=tmpfs
Options=mode=0750,size=1T,uid=filering,gid=999,nosuid,nodev,noexec

[Install]
WantedBy=local-fs.target
`
	if wantName := `run-my\x20ring\x2d1\x25.mount`; name != wantName {
		t.Errorf("name = %q, want %q", name, wantName)
	}
	if text != want {
		t.Errorf("MountUnit text:\n%s\nwant:\n%s", text, want)
	}
}

func TestMountUnit_options(t *testing.T) {
	tests := []struct {
		name      string
		dir       string
		opts      MountOptions
		wantName  string
		wantOpts  string
		wantAfter bool // After=systemd-sysusers.service
	}{
		{"names", "/run/ring", MountOptions{Size: 16 << 20, Mode: 0o750, User: "filering", Group: "filering"}, "run-ring.mount",
			"mode=0750,size=16M,uid=filering,gid=filering,nosuid,nodev,noexec", true},
		{"numbers", "/run/ring", MountOptions{Size: 64 << 10, Mode: 0o700, User: "0", Group: "999"}, "run-ring.mount",
			"mode=0700,size=64K,uid=0,gid=999,nosuid,nodev,noexec", false},
		{"defaults", "/run/ring", MountOptions{Size: 4097}, "run-ring.mount",
			"mode=0750,size=4097,nosuid,nodev,noexec", false},
		{"group name only, slashes collapsed", "//run//ring/", MountOptions{Size: 3 << 30, Group: "www-data"}, "run-ring.mount",
			"mode=0750,size=3G,gid=www-data,nosuid,nodev,noexec", true},
		{"user name starting with digits", "/srv/ring-2", MountOptions{Size: 1536 << 10, User: "1x"}, `srv-ring\x2d2.mount`,
			"mode=0750,size=1536K,uid=1x,nosuid,nodev,noexec", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, text, err := MountUnit(tt.dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName {
				t.Errorf("name = %q, want %q", name, tt.wantName)
			}
			if !strings.Contains(text, "\nOptions="+tt.wantOpts+"\n") {
				t.Errorf("want Options=%s in\n%s", tt.wantOpts, text)
			}
			if got := strings.Contains(text, "\nAfter=systemd-sysusers.service\n"); got != tt.wantAfter {
				t.Errorf("After=systemd-sysusers.service present: %v, want %v", got, tt.wantAfter)
			}
			if where := "/" + strings.Trim(strings.ReplaceAll(tt.dir, "//", "/"), "/"); !strings.Contains(text, "\nWhere="+where+"\n") {
				t.Errorf("want Where=%s in\n%s", where, text)
			}
		})
	}
}

func TestMountUnit_errors(t *testing.T) {
	ok := MountOptions{Size: 1 << 20}
	tests := []struct {
		name string
		dir  string
		opts MountOptions
		want error
	}{
		{"relative", "run/ring", ok, ErrBadPath},
		{"empty", "", ok, ErrBadPath},
		{"root", "/", ok, ErrBadPath},
		{"root twice", "//", ok, ErrBadPath},
		{"dot", "/run/./ring", ok, ErrBadPath},
		{"dot dot", "/run/../ring", ok, ErrBadPath},
		{"trailing dot dot", "/run/ring/..", ok, ErrBadPath},
		{"newline", "/run/ring\nExecStart=/bin/sh", ok, ErrBadPath},
		{"tab", "/run/a\tb", ok, ErrBadPath},
		{"backslash", `/run/a\b`, ok, ErrBadPath},
		{"not UTF-8", "/run/\xff", ok, ErrBadPath},
		{"name too long", "/" + strings.Repeat("a", 250), ok, ErrBadPath},
		{"zero size", "/run/ring", MountOptions{}, ErrBadOptions},
		{"negative size", "/run/ring", MountOptions{Size: -1}, ErrBadOptions},
		{"sticky mode", "/run/ring", MountOptions{Size: 1, Mode: 0o750 | fs.ModeSticky}, ErrBadOptions},
		{"directory mode", "/run/ring", MountOptions{Size: 1, Mode: fs.ModeDir | 0o750}, ErrBadOptions},
		{"user with comma", "/run/ring", MountOptions{Size: 1, User: "a,exec"}, ErrBadOptions},
		{"group with equals", "/run/ring", MountOptions{Size: 1, Group: "a=b"}, ErrBadOptions},
		{"group with space", "/run/ring", MountOptions{Size: 1, Group: "a b"}, ErrBadOptions},
		{"user starting with dash", "/run/ring", MountOptions{Size: 1, User: "-x"}, ErrBadOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, text, err := MountUnit(tt.dir, tt.opts)
			if !errors.Is(err, tt.want) || name != "" || text != "" {
				t.Errorf("MountUnit(%q, %+v) = %q, %q, %v; want %v", tt.dir, tt.opts, name, text, err, tt.want)
			}
		})
	}
	// The longest name systemd takes is fine.
	if name, _, err := MountUnit("/"+strings.Repeat("a", 249), ok); err != nil || len(name) != unitNameMax {
		t.Errorf("MountUnit with a %d-byte name: %q, %v", unitNameMax, name, err)
	}
}

// The shipped run-ring.mount is, below its comments, exactly what MountUnit writes.
func TestFiles_runRingMount(t *testing.T) {
	b, err := fs.ReadFile(Files(), "run-ring.mount")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	inHeader := true
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if inHeader && (strings.HasPrefix(line, "#") || line == "\n") {
			continue
		}
		inHeader = false
		body.WriteString(line)
	}
	_, want, err := MountUnit("/run/ring", MountOptions{Size: 32 << 20, Mode: 0o750, User: "filering", Group: "filering"})
	if err != nil {
		t.Fatal(err)
	}
	if body.String() != want {
		t.Errorf("run-ring.mount below its comments:\n%s\nMountUnit writes:\n%s", body.String(), want)
	}
}

func TestFiles(t *testing.T) {
	var names []string
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return err
	})
	want := "filering-produce@.service filering.conf filering.sysusers run-ring.mount"
	if err != nil || strings.Join(names, " ") != want {
		t.Errorf("Files() holds %q, %v; want %q", names, err, want)
	}
}
