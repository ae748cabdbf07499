package ramdisk

import (
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of an executable, or skips the test if it is missing and
// FILERING_REQUIRE_SYSTEMD is not "1" (then the test fails instead).
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("FILERING_REQUIRE_SYSTEMD") == "1" {
		t.Fatalf("%s not found and FILERING_REQUIRE_SYSTEMD=1: %v", name, err)
	}
	t.Skipf("%s not found (install Debian package systemd, or set FILERING_REQUIRE_SYSTEMD=1 to fail): %v", name, err)
	return ""
}

// needRoot skips the test unless the process is root, or fails it if
// FILERING_REQUIRE_ROOT is "1".
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
		t.Fatal("not root and FILERING_REQUIRE_ROOT=1")
	}
	t.Skip("needs root to mount (set FILERING_REQUIRE_ROOT=1 to fail instead)")
}
