package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestParts checks that `filering serve` and `filering forward` are the programs
// filering-serve and filering-forward, run from filering's directory with the arguments
// after the command: their help, their errors and exit statuses, and shell completion of
// their flags, all through filering.
func TestParts(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"serve", "--help"}, 0, "--listen ADDRESS", ""},
		{[]string{"forward", "--help"}, 0, "--stream NAME", ""},
		{[]string{"serve", "--listen", "127.0.0.1:0", "/dev/null"}, 1, "", "/dev/null"},
		{[]string{"serve", "--buffer", "0", "/tmp"}, 2, "", "--buffer 0"},
		{[]string{"serve", "--no-such-flag", "/tmp"}, 2, "", "no-such-flag"},
		{[]string{"forward", "/tmp/x"}, 2, "", "forward: --server is required"},
		{[]string{"serve", "--l", "--generate-bash-completion"}, 0, "--listen", ""},
		{[]string{"--help"}, 0, "the program filering-serve", ""},
	} {
		r := run(t, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(string(r.stdout), tc.out) || !strings.Contains(string(r.stderr), tc.err) {
			t.Errorf("filering %s: %v; want status %d, %q in stdout and %q in stderr",
				strings.Join(tc.args, " "), r, tc.code, tc.out, tc.err)
		}
	}
	for _, p := range []string{"filering-serve", "filering-forward"} {
		out, err := exec.Command(filepath.Join(filepath.Dir(bin), p), "--version").Output()
		if err != nil || !strings.HasPrefix(string(out), "filering ") {
			t.Errorf("%s --version: %v, %q", p, err, out)
		}
		out, err = exec.Command(filepath.Join(filepath.Dir(bin), p), "--man").Output()
		if err != nil || !strings.HasPrefix(string(out), ".nh\n.TH "+p+" 1 ") {
			t.Errorf("%s --man: %v, %.60q", p, err, out)
		}
	}
}

// TestParts_Missing: a filering installed without filering-serve, with none on PATH,
// says which program is missing, and fails with status 1; one on PATH is run.
func TestParts_Missing(t *testing.T) {
	dir := t.TempDir()
	alone := filepath.Join(dir, "filering")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(alone, "serve", "--help")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "empty"))
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "filering-serve, which is neither beside filering nor on PATH") {
		t.Errorf("filering serve without filering-serve: %v, %s", err, out)
	}
	cmd = exec.Command(alone, "serve", "--help")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--listen") {
		t.Errorf("filering serve with filering-serve on PATH: %v, %s", err, out)
	}
}
