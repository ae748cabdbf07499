package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPermissions_ReadOnlyUser: a user who may only read the ring (files 0644, as for a
// web server's group) can cat, stat (the producer's pid included) and watch it, and a
// take fails with a clear error instead of taking anything.
func TestPermissions_ReadOnlyUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
			t.Fatal("this test runs commands as another user and needs root")
		}
		t.Skip("needs root")
	}
	dir := ring(t)
	os.Chmod(filepath.Dir(dir), 0o755)
	p := startProducer(t, dir, "--mode", "0644", "--seal-after", "10ms")
	p.stdin.Write(lines(1000))
	waitFor(t, 10*time.Second, "records and a sealed segment", func() bool {
		m, err := os.ReadFile(filepath.Join(dir, "manifest"))
		return err == nil && bytes.Contains(m, []byte(`"sealed":true`))
	})

	// The other user needs to be able to run the binary.
	binDir, err := os.MkdirTemp("", "filering-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	os.Chmod(binDir, 0o755)
	self, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	nobodyBin := filepath.Join(binDir, "filering")
	if err := os.WriteFile(nobodyBin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(args ...string) (string, string, int) {
		cmd := exec.Command(nobodyBin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	if out, stderr, code := as("cat", "--last", "3", dir); code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("cat as a read-only user: exit %d, %q, %q", code, out, stderr)
	}
	out, stderr, code := as("stat", "--json", dir)
	var st struct {
		ProducerPID *int   `json:"producer_pid"`
		Records     uint64 `json:"records"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.ProducerPID == nil || *st.ProducerPID != p.pid() || st.Records == 0 {
		t.Fatalf("stat as a read-only user: exit %d, %q, %q", code, out, stderr)
	}
	out, stderr, code = as("take", dir)
	if code != 1 || !strings.Contains(stderr, "permission denied") || !strings.HasPrefix(stderr, "filering: ") || out != "" {
		t.Fatalf("take as a read-only user: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.taken"))
	if len(names) != 0 {
		t.Fatalf("a refused take left claims: %v", names)
	}
}
