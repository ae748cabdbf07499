package tests

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestDist runs scripts/dist.sh (what `make dist` runs) for the host's architecture and
// checks the archive: its name, its exact file list under one directory, the modes, and
// that the three programs in it are static, run, and report the stamped version, as do
// the manual pages that the script wrote with them, and that its filering runs its
// filering-serve.
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds filering's programs twice")
	}
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "386", "arm": "armv7"}[runtime.GOARCH]
	if arch == "" {
		t.Skipf("dist.sh builds no archive for %s", runtime.GOARCH)
	}
	for _, tool := range []string{"bash", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	dist := t.TempDir()
	const version = "v9.8.7-test"
	cmd := exec.Command("bash", "../scripts/dist.sh", dist)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd.Env = append(os.Environ(), "ARCHES="+arch, "VERSION="+version, "GO="+goBin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/dist.sh: %v\n%s", err, out)
	}
	name := "filering-" + version + "-linux-" + arch
	archive := filepath.Join(dist, name+".tar.gz")
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(archive) {
		t.Fatalf("dist.sh wrote %v, want only %s", entries, filepath.Base(archive))
	}

	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	unpacked := t.TempDir()
	var files []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", h.Name, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeDir {
			if h.Name != name+"/" {
				t.Errorf("directory %s in the archive, want only %s/", h.Name, name)
			}
			continue
		}
		rel, ok := strings.CutPrefix(h.Name, name+"/")
		if !ok || strings.Contains(rel, "/") || h.Typeflag != tar.TypeReg {
			t.Errorf("%s (type %c): want regular files directly in %s/", h.Name, h.Typeflag, name)
			continue
		}
		files = append(files, rel)
		want := int64(0o644)
		if rel == "filering" || rel == "filering-serve" || rel == "filering-forward" {
			want = 0o755
		}
		if h.Mode&0o7777 != want {
			t.Errorf("%s: mode %o, want %o", rel, h.Mode, want)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unpacked, rel), data, os.FileMode(want)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"DEPLOY.md", "_filering", "filering", "filering-forward", "filering-forward.1",
		"filering-produce@.service", "filering-serve", "filering-serve.1", "filering.1",
		"filering.bash", "filering.conf", "filering.sysusers", "run-ring.mount",
	}
	if !slices.Equal(files, want) {
		t.Fatalf("archive holds %q, want %q", files, want)
	}
	for _, src := range []string{
		"../ramdisk/DEPLOY.md", "../ramdisk/systemd/filering-produce@.service", "../ramdisk/systemd/filering.conf",
		"../ramdisk/systemd/filering.sysusers", "../ramdisk/systemd/run-ring.mount",
	} {
		a, errA := os.ReadFile(src)
		b, errB := os.ReadFile(filepath.Join(unpacked, filepath.Base(src)))
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("%s in the archive differs from %s (%v, %v)", filepath.Base(src), src, errA, errB)
		}
	}

	for _, p := range []string{"filering", "filering-serve", "filering-forward"} {
		exe := filepath.Join(unpacked, p)
		if out, err := exec.Command("file", exe).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
			t.Errorf("%s is not static: %s", p, out)
		}
		out, err := exec.Command(exe, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", p, err)
		}
		if !strings.HasPrefix(string(out), "filering "+version+"\n") {
			t.Errorf("%s --version printed %q, want the version %s first", p, out, version)
		}
		page, err := os.ReadFile(filepath.Join(unpacked, p+".1"))
		if err != nil || !strings.Contains(string(page), ".TH "+p+" 1 \"\" \"filering "+version+"\"") || !strings.Contains(string(page), ".SH SYNOPSIS") {
			t.Errorf("%s.1 is not the manual page of %s %s (%v)", p, p, version, err)
		}
	}
	// The archive's filering runs the archive's filering-serve.
	if out, err := exec.Command(filepath.Join(unpacked, "filering"), "serve", "--help").Output(); err != nil || !strings.Contains(string(out), "--listen") {
		t.Errorf("filering serve --help from the archive: %v, %q", err, out)
	}
	for file, want := range map[string]string{"filering.bash": "complete -o bashdefault", "_filering": "#compdef filering"} {
		if b, err := os.ReadFile(filepath.Join(unpacked, file)); err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q (%v)", file, want, err)
		}
	}
}
