package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/filering/filering/ramdisk"
)

// runRamdisk runs `filering ramdisk args...` and returns what it printed, its exit
// status and the message that goes with a non-zero status.
func runRamdisk(t *testing.T, args ...string) (stdout string, code int, msg string) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "filering",
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       []*cli.Command{ramdiskCommand()},
	}
	err := app.Run(append([]string{"filering", "ramdisk"}, args...))
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return out.String(), 0, ""
	case errors.As(err, &ec):
		return out.String(), ec.ExitCode(), ec.Error()
	default:
		t.Fatalf("filering ramdisk %s: error without exit status: %v", strings.Join(args, " "), err)
		return "", 0, ""
	}
}

// isMount reports whether /proc/self/mountinfo lists fsType at point.
func isMount(t *testing.T, point, fsType string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
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

func TestRamdiskCheck(t *testing.T) {
	shm := isMount(t, "/dev/shm", "tmpfs")
	wd, _ := os.Getwd()
	wdInfo, err := ramdisk.Check(wd)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		skip     bool
		wantCode int
		wantOut  string // substring of stdout
		wantMsg  string // substring of the exit message
	}{
		{"tmpfs, not there yet", []string{"check", "/dev/shm/filering-no-such"}, !shm, 0,
			"dir:   /dev/shm/filering-no-such (does not exist yet)\nmount: tmpfs at /dev/shm", ""},
		{"fits", []string{"check", "--segment-size", "64KiB", "--segments", "4", "/dev/shm"}, !shm, 0,
			"ring:  4 segments of 64KiB fits\n", ""},
		{"no room", []string{"check", "--segment-size", "1GiB", "--segments", "65536", "/dev/shm"}, !shm, 1,
			"does not fit", "filering: ramdisk: no room: 65536 segments of 1GiB need"},
		{"devtmpfs", []string{"check", "/dev"}, !isMount(t, "/dev", "devtmpfs"), 1,
			"mount: devtmpfs at /dev", "filering: /dev is on devtmpfs (mounted at /dev), not tmpfs"},
		{"disk", []string{"check", wd}, wdInfo.TmpFS, 1,
			"dir:   " + wd + "\n", "filering: " + wd + " is on " + wdInfo.FSType},
		{"not a directory", []string{"check", "ramdisk_test.go"}, false, 1,
			"", "not a directory"},
		{"no DIR", []string{"check"}, false, 2, "", "want exactly one DIR, got 0"},
		{"two DIRs", []string{"check", "/a", "/b"}, false, 2, "", "want exactly one DIR, got 2"},
		{"flag after DIR", []string{"check", "/dev/shm", "--json"}, false, 2, "", `flags go before DIR, but "--json" comes after it`},
		{"bad segment size", []string{"check", "--segment-size", "1MB", "/dev/shm"}, false, 2, "", `--segment-size: ramdisk: bad size "1MB"`},
		{"zero segments", []string{"check", "--segments", "0", "/dev/shm"}, false, 2, "", "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("this machine lacks the filesystem the case needs")
			}
			out, code, msg := runRamdisk(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("filering ramdisk %s: status %d, message %q, output:\n%s\nwant status %d, message with %q, output with %q",
					strings.Join(tt.args, " "), code, msg, out, tt.wantCode, tt.wantMsg, tt.wantOut)
			}
		})
	}
}

func TestRamdiskCheck_json(t *testing.T) {
	if !isMount(t, "/dev", "devtmpfs") {
		t.Skip("no devtmpfs at /dev")
	}
	out, code, msg := runRamdisk(t, "check", "--json", "--segment-size", "4K", "--segments", "2", "/dev")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if code != 1 || msg == "" || got["tmpfs"] != false || got["fs_type"] != "devtmpfs" || got["fits"] != true ||
		got["segment_size"] != 4096.0 || got["segments"] != 2.0 || got["path"] != "/dev" || got["problem"] != strings.TrimPrefix(msg, "filering: ") {
		t.Errorf("status %d, message %q, JSON %v", code, msg, got)
	}
}

func TestRamdiskUnit(t *testing.T) {
	_, want, err := ramdisk.MountUnit("/run/ring", ramdisk.MountOptions{Size: 16 << 20, Mode: 0o750, User: "filering", Group: "filering"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // all of stdout
		wantMsg  string // substring of the exit message
	}{
		{"text", []string{"unit", "--size", "16MiB", "--user", "filering", "--group", "filering", "/run/ring"}, 0, want, ""},
		{"name", []string{"unit", "--name", "--size", "16M", "/run/ring-1"}, 0, "run-ring\\x2d1.mount\n", ""},
		{"no size", []string{"unit", "/run/ring"}, 2, "", "--size is required"},
		{"tiny size", []string{"unit", "--size", "16", "/run/ring"}, 0, "", ""}, // the kernel rounds it up to a page
		{"garbage size", []string{"unit", "--size", "lots", "/run/ring"}, 2, "", `bad size "lots"`},
		{"bad mode", []string{"unit", "--size", "1M", "--mode", "0780", "/run/ring"}, 2, "", `--mode "0780"`},
		{"mode too wide", []string{"unit", "--size", "1M", "--mode", "01777", "/run/ring"}, 2, "", `--mode "01777"`},
		{"relative", []string{"unit", "--size", "1M", "run/ring"}, 2, "", "not an absolute path"},
		{"dot dot", []string{"unit", "--size", "1M", "/run/../ring"}, 2, "", `".." component`},
		{"bad group", []string{"unit", "--size", "1M", "--group", "a,b", "/run/ring"}, 2, "", "bad mount options"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code, msg := runRamdisk(t, tt.args...)
			if code != tt.wantCode || (tt.wantOut != "" && out != tt.wantOut) || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("filering ramdisk %s: status %d, message %q, output:\n%s\nwant status %d, message with %q, output:\n%s",
					strings.Join(tt.args, " "), code, msg, out, tt.wantCode, tt.wantMsg, tt.wantOut)
			}
		})
	}
}

func TestRamdiskMount(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no size", []string{"mount", "/tmp/x"}, "--size is required"},
		{"bad group", []string{"mount", "--size", "1M", "--group", "a b", "/tmp/x"}, "bad mount options"},
		{"no DIR", []string{"mount", "--size", "1M"}, "want exactly one DIR"},
	} {
		if _, code, msg := runRamdisk(t, tt.args...); code != 2 || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: status %d, message %q; want 2 and %q", tt.name, code, msg, tt.msg)
		}
	}

	if os.Geteuid() != 0 {
		if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
			t.Fatal("not root and FILERING_REQUIRE_ROOT=1")
		}
		out, code, msg := runRamdisk(t, "mount", "--size", "1M", filepath.Join(t.TempDir(), "ring"))
		if code != 1 || !strings.Contains(msg, "not root") || out != "" {
			t.Errorf("mount as non-root: status %d, message %q, output %q; want 1 and not root", code, msg, out)
		}
		t.Skip("the rest needs root (set FILERING_REQUIRE_ROOT=1 to fail instead)")
	}
	dir := filepath.Join(t.TempDir(), "ring")
	t.Cleanup(func() {
		for unix.Unmount(dir, 0) == nil {
		}
	})
	out, code, msg := runRamdisk(t, "mount", "--size", "2MiB", "--mode", "0700", dir)
	if code == 1 && strings.Contains(msg, "not root") && os.Getenv("FILERING_REQUIRE_ROOT") != "1" {
		t.Skipf("cannot mount here: %s", msg)
	}
	if code != 0 || out != dir+": mounted a tmpfs of 2MiB\n" {
		t.Fatalf("first mount: status %d, message %q, output %q", code, msg, out)
	}
	out, code, msg = runRamdisk(t, "mount", "--size", "4MiB", dir)
	if code != 0 || !strings.Contains(out, "already mounted") {
		t.Errorf("second mount: status %d, message %q, output %q; want 0 and already mounted", code, msg, out)
	}
	out, code, msg = runRamdisk(t, "check", "--segment-size", "512KiB", "--segments", "2", dir)
	if code != 0 || !strings.Contains(out, "mount: tmpfs at "+dir+" (rw,nosuid,nodev,noexec") || !strings.Contains(out, "space: 2MiB, 2MiB free") {
		t.Errorf("check after mount: status %d, message %q, output:\n%s", code, msg, out)
	}
}
