package cgi

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
)

// The nginx test runs the nginx site of README.md ("Run it under nginx with fcgiwrap"),
// as the README gives it, on a loopback port: nginx and fcgiwrap (Debian: apt-get
// install -y nginx fcgiwrap) each run from a temporary directory, with the paths of the
// README's server block replaced by those of the test. Without nginx or fcgiwrap it
// skips, unless FILERING_REQUIRE_NGINX=1, which makes their absence a failure (for CI).

// tool returns the path of the program name, looked up in PATH and in /usr/sbin (where
// Debian puts nginx and fcgiwrap, not in the PATH of other users than root), or skips
// the test when there is none and FILERING_REQUIRE_NGINX is not 1.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p
	}
	if os.Getenv("FILERING_REQUIRE_NGINX") == "1" {
		t.Fatalf("FILERING_REQUIRE_NGINX=1, but there is no %s (Debian: apt-get install -y nginx fcgiwrap)", name)
	}
	t.Skipf("no %s (Debian: apt-get install -y nginx fcgiwrap; FILERING_REQUIRE_NGINX=1 makes this a failure)", name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// readmeSite returns the nginx server block of README.md, after checking that it says
// each of want, with the README's paths replaced in the order repl gives them (from, to,
// from, to, ...); it fails when one of them is not in it any more.
func readmeSite(t *testing.T, want []string, repl ...string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md: no nginx block")
	}
	site := string(m[1])
	for i := 0; i < len(repl); i += 2 {
		want = append(want, repl[i])
	}
	for _, w := range want {
		if !strings.Contains(site, w) {
			t.Fatalf("README.md's nginx block does not say %q any more:\n%s", w, site)
		}
	}
	for i := 0; i < len(repl); i += 2 {
		site = strings.ReplaceAll(site, repl[i], repl[i+1])
	}
	return site
}

// startGroup starts cmd in a process group of its own, with its output in log; the
// test's cleanup kills the group and waits for cmd.
func startGroup(t *testing.T, cmd *exec.Cmd, log string) {
	t.Helper()
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s said:\n%s", filepath.Base(cmd.Path), b)
		}
	})
}

// TestNginxFcgiwrap serves the ring a producer writes through nginx, fcgiwrap and
// graph.cgi, configured as README.md says, and checks the page, the records, a long
// poll that a new record ends, /healthz and /metrics.
func TestNginxFcgiwrap(t *testing.T) {
	nginx, fcgiwrap := tool(t, "nginx"), tool(t, "fcgiwrap")
	python(t) // graph.cgi runs python3 (found by its #! line, in fcgiwrap's default PATH)
	start := time.Now()
	tmp := t.TempDir()
	for _, d := range []string{"www", "logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("graph.cgi")
	if err != nil {
		t.Fatal(err)
	}
	index, _ := filepath.Abs("index.html")
	if err := os.Symlink(index, filepath.Join(tmp, "www", "index.html")); err != nil {
		t.Fatal(err)
	}

	ring := ringtest.Dir(t)
	w, err := publish.Open(ring, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 1; i <= 50; i++ {
		if _, err := w.Append(fmt.Appendf(nil, "%d.5", i)); err != nil {
			t.Fatal(err)
		}
	}

	sock := filepath.Join(tmp, "fcgiwrap.socket")
	startGroup(t, exec.Command(fcgiwrap, "-c", "4", "-s", "unix:"+sock), filepath.Join(tmp, "logs", "fcgiwrap.log"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	site := readmeSite(t,
		[]string{`location ~ ^/graph\.cgi(/.*)?$ {`, "fastcgi_param PATH_INFO       $1;", "fastcgi_buffering off;", "fastcgi_read_timeout 90s;"},
		"listen 80;", "listen "+addr+";",
		"/srv/graph", filepath.Join(tmp, "www"),
		"/srv/filering/examples/cgi/graph.cgi", script,
		"/run/ring/sensor", ring,
		"unix:/run/fcgiwrap.socket", "unix:"+sock,
		"include fastcgi_params;", "include "+fastcgiParams(t, nginx)+";",
	)
	runAs := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot reach this test's files.
		u, _ := user.Current()
		runAs = "user " + u.Username + ";\n"
	}
	conf := fmt.Sprintf(`%sdaemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    proxy_temp_path %[2]s/tmp/proxy;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
%[3]s}
`, runAs, tmp, site)
	confPath := filepath.Join(tmp, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startGroup(t, exec.Command(nginx, "-p", tmp, "-c", confPath, "-e", filepath.Join(tmp, "logs", "error.log")), filepath.Join(tmp, "logs", "nginx.log"))
	base := "http://" + addr
	waitHTTP(t, base+"/")

	// The page, as README.md says to open it.
	code, hdr, body := httpGet(t, base+"/?api=graph.cgi")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(body, "<canvas") {
		t.Fatalf("the page: %d %q", code, hdr.Get("Content-Type"))
	}
	// The records.
	var doc struct {
		Records []struct {
			Seq   uint64 `json:"seq"`
			Value any    `json:"value"`
		} `json:"records"`
		LastSeq uint64 `json:"last_seq"`
	}
	for _, path := range []string{"/graph.cgi?last=3", "/graph.cgi/records?last=3"} {
		code, hdr, body = httpGet(t, base+path)
		if err := json.Unmarshal([]byte(body), &doc); err != nil || code != 200 || hdr.Get("Content-Type") != "application/json; charset=utf-8" ||
			len(doc.Records) != 3 || doc.Records[0].Seq != 48 || doc.Records[2].Value != 50.5 || doc.LastSeq != 50 {
			t.Fatalf("%s: %d %q %s (%v)", path, code, hdr.Get("Content-Type"), body, err)
		}
	}
	// A long poll, ended by the next record: nginx passes it on at once (no buffering).
	go func() {
		time.Sleep(300 * time.Millisecond)
		w.Append([]byte("hello"))
	}()
	polled := time.Now()
	code, _, body = httpGet(t, base+"/graph.cgi?after=50&wait=20")
	if err := json.Unmarshal([]byte(body), &doc); err != nil || code != 200 || len(doc.Records) != 1 || doc.Records[0].Value != "hello" || doc.LastSeq != 51 {
		t.Fatalf("long poll: %d %s (%v)", code, body, err)
	}
	if d := time.Since(polled); d > 10*time.Second {
		t.Errorf("the long poll took %v: it waited out its time instead of ending with the record", d)
	}
	// /healthz and /metrics, through PATH_INFO.
	var h struct {
		OK          bool   `json:"ok"`
		LastSeq     uint64 `json:"last_seq"`
		ProducerPID int    `json:"producer_pid"`
	}
	code, _, body = httpGet(t, base+"/graph.cgi/healthz")
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || !h.OK || h.LastSeq != 51 || h.ProducerPID != os.Getpid() {
		t.Fatalf("/graph.cgi/healthz: %d %s (%v)", code, body, err)
	}
	code, hdr, body = httpGet(t, base+"/graph.cgi/metrics")
	label := `{ring="` + ring + `"}`
	for _, want := range []string{"filering_records" + label + " 51\n", "filering_producer_up" + label + " 1\n", "# TYPE filering_last_sequence gauge\n"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/graph.cgi/metrics: %d, lacks %q:\n%s", code, want, body)
		}
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("/graph.cgi/metrics: Content-Type %q", ct)
	}
	if code, _, body = httpGet(t, base+"/graph.cgi/nothing"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("/graph.cgi/nothing: %d %s", code, body)
	}
	t.Logf("nginx, fcgiwrap and graph.cgi checked in %v", time.Since(start).Round(time.Millisecond))
}

// fastcgiParams returns nginx's fastcgi_params file, which the README's server block
// includes relative to nginx's configuration directory: the one `nginx -V` names.
func fastcgiParams(t *testing.T, nginx string) string {
	t.Helper()
	out, _ := exec.Command(nginx, "-V").CombinedOutput()
	conf := "/etc/nginx/nginx.conf"
	if m := regexp.MustCompile(`--conf-path=(\S+)`).FindSubmatch(out); m != nil {
		conf = string(m[1])
	}
	p := filepath.Join(filepath.Dir(conf), "fastcgi_params")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("nginx's fastcgi_params: %v", err)
	}
	return p
}

// waitHTTP waits up to 10 seconds for url to answer.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
