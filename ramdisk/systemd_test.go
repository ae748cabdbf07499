package ramdisk

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// copyFiles writes the shipped files into a new temporary directory and returns it.
func copyFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, Files()); err != nil {
		t.Fatal(err)
	}
	return dir
}

// verify runs systemd-analyze verify on units and fails the test on any complaint,
// warnings included.
func verify(t *testing.T, units ...string) {
	t.Helper()
	tool := needTool(t, "systemd-analyze")
	args := append([]string{"verify", "--man=no", "--generators=no"}, units...)
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestSystemdVerify_shipped(t *testing.T) {
	dir := copyFiles(t)
	// An instance of the template loads the template; RequiresMountsFor=/run/ring pulls in
	// run-ring.mount from the same directory, so the two are checked together.
	verify(t, filepath.Join(dir, "run-ring.mount"), filepath.Join(dir, "filering-produce@test.service"))
}

// Units for awkward paths load, so their names match their Where= as systemd wants.
// (systemd-analyze verify reads a ':' in a file name as FILE:ALIAS, so ':' is tested only
// against systemd-escape.)
func TestSystemdVerify_generated(t *testing.T) {
	for _, p := range []string{"/run/ring", "/run/my ring", "/run/ring-1", "/srv/ünï", "/run/a%b", "/.hidden", "/run/a_b.c"} {
		t.Run(p, func(t *testing.T) {
			name, text, err := MountUnit(p, MountOptions{Size: 1 << 20, User: "root", Group: "0"})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			verify(t, file)
		})
	}
}

// systemd-sysusers creates the user that the tmpfiles.d line then gives /run/ring to,
// both in a scratch root.
func TestSysusersTmpfiles(t *testing.T) {
	sysusers := needTool(t, "systemd-sysusers")
	dir := copyFiles(t)
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+root, filepath.Join(dir, "filering.sysusers")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid int
	if _, err := fmt.Sscanf(firstLine(passwd, "filering:"), "filering:x:%d:%d:", &uid, &gid); err != nil {
		t.Fatalf("no filering user in\n%s", passwd)
	}
	if !strings.Contains(string(passwd), ":/usr/sbin/nologin\n") {
		t.Errorf("filering can log in:\n%s", passwd)
	}

	needRoot(t) // chown
	tmpfiles := needTool(t, "systemd-tmpfiles")
	if out, err := exec.Command(tmpfiles, "--create", "--root="+root, filepath.Join(dir, "filering.conf")).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(root, "run/ring"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || st.Mode().Perm() != 0o750 || int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("/run/ring is %v owned by %d:%d; want a 0750 directory owned by %d:%d", st.Mode(), sys.Uid, sys.Gid, uid, gid)
	}
}

// firstLine returns the first line of b that starts with prefix, or "".
func firstLine(b []byte, prefix string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text()
		}
	}
	return ""
}

// execStart returns the producer unit's ExecStart= as the argv systemd would run for
// instance, with the producer binary replaced by producer. It knows only the quoting
// the unit uses: words split at spaces, single quotes, "$$" and "%i".
func execStart(t *testing.T, instance, producer string) []string {
	t.Helper()
	b, err := fs.ReadFile(Files(), "filering-produce@.service")
	if err != nil {
		t.Fatal(err)
	}
	line := firstLine(b, "ExecStart=")
	if line == "" {
		t.Fatal("no ExecStart= in filering-produce@.service")
	}
	line = strings.TrimPrefix(line, "ExecStart=")
	var argv []string
	for line != "" {
		var word string
		if strings.HasPrefix(line, "'") {
			end := strings.Index(line[1:], "'")
			if end < 0 {
				t.Fatalf("unterminated quote in ExecStart=%s", line)
			}
			word, line = line[1:end+1], line[end+2:]
		} else {
			word, line, _ = strings.Cut(line, " ")
		}
		line = strings.TrimLeft(line, " ")
		word = strings.ReplaceAll(word, "%i", instance)
		word = strings.ReplaceAll(word, "$$", "$")
		word = strings.ReplaceAll(word, "/usr/local/bin/filering", producer)
		argv = append(argv, word)
	}
	return argv
}

// The producer unit's shell line passes the ring and flags to the producer, feeds it
// the source's output, and fails when either side fails (pipefail).
func TestProduceService_execStart(t *testing.T) {
	bash := "/bin/bash"
	if _, err := os.Stat(bash); err != nil {
		t.Skipf("no %s: %v", bash, err)
	}
	dir := t.TempDir()
	producer := filepath.Join(dir, "filering")
	// The fake producer records its arguments and input, and exits with $PRODUCER_EXIT.
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$OUT.args\"\ncat > \"$OUT.in\"\nexit \"${PRODUCER_EXIT:-0}\"\n"
	if err := os.WriteFile(producer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		env      []string
		wantExit int
		wantArgs string // "" if the producer must not run
		wantIn   string
	}{
		{"source ends cleanly", []string{"FILERING_SOURCE=printf 'a b\\nc\\n'", "FILERING_OPTS="},
			0, "produce\n/run/ring/cam-1\n", "a b\nc\n"},
		{"flags are split", []string{"FILERING_SOURCE=echo x", "FILERING_OPTS=--segment-size 1MiB"},
			0, "produce\n--segment-size\n1MiB\n/run/ring/cam-1\n", "x\n"},
		{"source is a pipeline", []string{"FILERING_SOURCE=printf 'a\\nb\\n' | sort -r", "FILERING_OPTS="},
			0, "produce\n/run/ring/cam-1\n", "b\na\n"},
		{"source fails", []string{"FILERING_SOURCE=echo x; exit 3", "FILERING_OPTS="},
			3, "produce\n/run/ring/cam-1\n", "x\n"},
		{"producer fails", []string{"FILERING_SOURCE=echo x", "FILERING_OPTS=", "PRODUCER_EXIT=4"},
			4, "produce\n/run/ring/cam-1\n", "x\n"},
		{"no source", []string{"FILERING_OPTS="}, 127, "", ""},
		{"empty source", []string{"FILERING_SOURCE=", "FILERING_OPTS="}, 127, "", ""},
		{"source not found", []string{"FILERING_SOURCE=/nonexistent/cam", "FILERING_OPTS="},
			127, "produce\n/run/ring/cam-1\n", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprint(i))
			argv := execStart(t, "cam-1", producer)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append([]string{"PATH=/usr/bin:/bin", "OUT=" + out}, tt.env...)
			msg, err := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tt.wantExit {
				t.Fatalf("exit %d (%v), want %d; output:\n%s", got, err, tt.wantExit, msg)
			}
			args, _ := os.ReadFile(out + ".args")
			in, _ := os.ReadFile(out + ".in")
			if string(args) != tt.wantArgs || string(in) != tt.wantIn {
				t.Errorf("producer args %q, input %q; want %q, %q", args, in, tt.wantArgs, tt.wantIn)
			}
			if tt.name == "no source" && !strings.Contains(string(msg), "FILERING_SOURCE: is not set in /etc/filering/cam-1.env") {
				t.Errorf("no message naming the env file:\n%s", msg)
			}
		})
	}
}
