//go:build linux

package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/servetest"
)

// The browser test loads the live graph page of a Server in headless Chromium
// (Debian: apt-get install -y chromium). Without chromium in PATH it skips, unless
// FILERING_REQUIRE_CHROMIUM=1, which makes a missing browser a failure (for CI).
// FILERING_UPDATE_SCREENSHOT=1 makes TestServe_BrowserSeries write the screenshot it takes,
// three series in °C, to docs/live-graph.png.
//
// The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
// chromium reads commands from its fd 3 and writes replies and events to its fd 4, each
// a JSON message ended by a NUL byte. That needs no port, no websocket and no module
// beyond the standard library, and the eight commands used here need little code.

const (
	// screenshotPath is where FILERING_UPDATE_SCREENSHOT=1 writes the screenshot,
	// relative to this package's directory.
	screenshotPath = "../docs/live-graph.png"
	// viewWidth and viewHeight are the size of the page in CSS pixels, and of the screenshot.
	viewWidth, viewHeight = 1200, 700
	// staleSeconds is the page's stale timeout (its stale= parameter): short, so that the
	// test sees the page turn stale soon after the producer stops.
	staleSeconds = 1
	// pagePoints is how many records the page keeps and draws: its points= default.
	pagePoints = 600
	// producerRate is how many records a second the test's producer appends, and
	// producerMax the most it appends before it stops by itself.
	producerRate, producerMax = 100, 1000
)

// TestServe_BrowserLiveGraph loads the page with an empty ring, appends a sine wave at
// 100 records a second, and checks through window.fileringStats that the page draws the
// records as they arrive, up to the newest one, and that it turns stale when the
// producer stops.
func TestServe_BrowserLiveGraph(t *testing.T) {
	bin := chromiumPath(t)
	start := time.Now()
	step := func(what string) { t.Logf("%5.2fs %s", time.Since(start).Seconds(), what) }
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	base, w := startServe(t, 0)
	b := startChromium(t, bin)
	session := b.openPage(ctx, t)
	step("chromium started, tab open")
	b.mustCall(ctx, t, session, "Runtime.enable", nil, nil) // reports uncaught exceptions
	b.mustCall(ctx, t, session, "Page.enable", nil, nil)
	b.mustCall(ctx, t, session, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": viewWidth, "height": viewHeight, "deviceScaleFactor": 1, "mobile": false,
	}, nil)
	pageURL := fmt.Sprintf("%s/?stale=%d", base, staleSeconds)
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	b.mustCall(ctx, t, session, "Page.navigate", map[string]any{"url": pageURL}, &nav)
	if nav.ErrorText != "" {
		t.Fatalf("navigate to %s: %s", pageURL, nav.ErrorText)
	}

	// The page follows the ring through its event stream: once the server counts that
	// stream, every record appended from then on reaches the page live.
	waitFor(ctx, t, "the page's event stream to connect", func() (bool, string) {
		var h struct {
			Clients int `json:"clients"`
		}
		servetest.GetJSON(t, base+"/healthz", &h)
		return h.Clients >= 1, fmt.Sprintf("%d event streams", h.Clients)
	})
	step("event stream connected")
	if st := b.pageState(ctx, t, session); st.Points != 0 || st.LastSeq != 0 {
		t.Fatalf("page drew records of an empty ring: %+v", st)
	}

	// The producer: a sine wave with a ripple, its phase taken from the clock, so that
	// the graph's time axis and the wave agree whatever the pacing.
	stop := make(chan struct{})
	produced := make(chan uint64, 1)
	go func() {
		var newest uint64
		defer func() { produced <- newest }()
		tick := time.NewTicker(time.Second / producerRate)
		defer tick.Stop()
		start := time.Now()
		for i := 0; i < producerMax; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := time.Since(start).Seconds()
			v := 10*math.Sin(2*math.Pi*s/1.5) + 1.5*math.Sin(2*math.Pi*s/0.2)
			seq, err := w.Append(fmt.Appendf(nil, "%.3f", v))
			if err != nil {
				t.Errorf("append: %v", err)
				return
			}
			newest = seq
		}
	}()
	stopProducer := sync.OnceValue(func() uint64 { close(stop); return <-produced })
	t.Cleanup(func() { stopProducer() })

	// Live: a second and a half of records drawn, and the page not stale.
	live := b.waitPage(ctx, t, session, "150 points drawn, live", func(st pageState) bool {
		return st.Points >= 150 && st.LastSeq >= 150 && !st.Stale
	})
	if live.State != "live" {
		t.Errorf("page says %q while records arrive, want \"live\"", live.State)
	}
	step("live")
	png := b.screenshot(ctx, t, session)

	// Stopped: the page gets every record up to the newest, then turns stale.
	newest := stopProducer()
	step(fmt.Sprintf("producer stopped after %d records", newest))
	want := min(int(newest), pagePoints)
	b.waitPage(ctx, t, session, fmt.Sprintf("lastSeq %d and %d points", newest, want), func(st pageState) bool {
		return st.LastSeq == newest && st.Points == want
	})
	step("page has every record")
	stale := b.waitPage(ctx, t, session, "stale", func(st pageState) bool { return st.Stale })
	step("page stale")
	if !strings.HasPrefix(stale.State, "stale") || stale.LastSeq != newest || stale.Points != want {
		t.Errorf("stale page: %+v", stale)
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("the page threw:\n%s", strings.Join(ex, "\n"))
	}

	_ = png // TestServe_BrowserSeries writes the screenshot of the README
}

// chromiumPath returns the chromium binary, or skips the test when there is none and
// FILERING_REQUIRE_CHROMIUM is not 1.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("FILERING_REQUIRE_CHROMIUM") == "1" {
		t.Fatalf("FILERING_REQUIRE_CHROMIUM=1, but %v (Debian: apt-get install -y chromium)", err)
	}
	t.Skipf("no browser: %v (Debian: apt-get install -y chromium; FILERING_REQUIRE_CHROMIUM=1 makes this a failure)", err)
	return ""
}

// waitFor calls check every 50 ms until it returns true, and fails the test when ctx
// ends first, with what check last said.
func waitFor(ctx context.Context, t *testing.T, what string, check func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := check()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last seen: %s", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// pageState is what the page shows: window.fileringStats and the text of its state badge.
type pageState struct {
	Points  int    `json:"points"`
	LastSeq uint64 `json:"lastSeq"`
	Stale   bool   `json:"stale"`
	State   string `json:"state"`
}

const pageStateJS = `(() => {
	const s = window.fileringStats, e = document.getElementById("state");
	return s ? {points: s.points, lastSeq: s.lastSeq, stale: s.stale, state: e ? e.textContent : ""} : null;
})()`

// pageState reads the page's state.
func (b *chromium) pageState(ctx context.Context, t *testing.T, session string) pageState {
	t.Helper()
	st, err := b.tryPageState(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tryPageState reads the page's state; it fails while the page is still loading.
func (b *chromium) tryPageState(ctx context.Context, session string) (pageState, error) {
	var res struct {
		Result struct {
			Value *pageState `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	err := b.call(ctx, session, "Runtime.evaluate", map[string]any{
		"expression": pageStateJS, "returnByValue": true,
	}, &res)
	switch {
	case err != nil:
		return pageState{}, err
	case res.ExceptionDetails != nil:
		return pageState{}, fmt.Errorf("reading the page's state: %s", res.ExceptionDetails.Text)
	case res.Result.Value == nil:
		return pageState{}, errors.New("the page has no window.fileringStats")
	}
	return *res.Result.Value, nil
}

// waitPage polls the page's state until ok accepts it, and returns it.
func (b *chromium) waitPage(ctx context.Context, t *testing.T, session, what string, ok func(pageState) bool) pageState {
	t.Helper()
	var st pageState
	waitFor(ctx, t, what, func() (bool, string) {
		var err error
		if st, err = b.tryPageState(ctx, session); err != nil {
			select {
			case <-b.done:
				t.Fatal(err) // no use waiting
			default:
			}
			return false, err.Error()
		}
		return ok(st), fmt.Sprintf("%+v", st)
	})
	return st
}

// screenshot returns a PNG of the page, checked to be viewWidth by viewHeight pixels.
func (b *chromium) screenshot(ctx context.Context, t *testing.T, session string) []byte {
	t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	b.mustCall(ctx, t, session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(png))
	if err != nil || format != "png" || cfg.Width != viewWidth || cfg.Height != viewHeight {
		t.Fatalf("screenshot: %s %dx%d, %v; want a png of %dx%d", format, cfg.Width, cfg.Height, err, viewWidth, viewHeight)
	}
	return png
}

// chromium is a headless Chromium process and a DevTools protocol client on its pipe.
// Calls may be made from any goroutine. One goroutine, owned by the chromium and
// stopped by the test's cleanup, reads the pipe.
type chromium struct {
	cmd  *exec.Cmd
	in   *os.File // to chromium's fd 3
	out  *os.File // from chromium's fd 4
	done chan struct{}

	wmu sync.Mutex // serialises writes to in

	mu      sync.Mutex
	next    int64
	pending map[int64]chan cdpMessage
	thrown  []string // uncaught exceptions in the page
	readErr error    // why the reader stopped; set before done is closed
}

// cdpMessage is a reply (ID set) or an event (Method set) from chromium.
type cdpMessage struct {
	ID     int64           `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// startChromium starts headless chromium with a fresh profile. The test's cleanup kills
// it and its helper processes.
func startChromium(t *testing.T, bin string) *chromium {
	t.Helper()
	profile := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "chromium.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	theirIn, in, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, theirOut, err := os.Pipe()
	if err != nil {
		theirIn.Close()
		in.Close()
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding",
		"--disable-backgrounding-occluded-windows", "--hide-scrollbars", "--mute-audio",
		fmt.Sprintf("--window-size=%d,%d", viewWidth, viewHeight),
		"--user-data-dir="+profile, "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{theirIn, theirOut} // fd 3 and fd 4
	cmd.Env = chromiumEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that the renderer and other helpers can be killed with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	theirIn.Close()
	theirOut.Close()
	if err != nil {
		in.Close()
		out.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	b := &chromium{cmd: cmd, in: in, out: out, done: make(chan struct{}), pending: map[int64]chan cdpMessage{}}
	go b.read()
	t.Cleanup(func() {
		if err := b.close(); err != nil {
			t.Errorf("chromium: %v", err)
		}
		if t.Failed() {
			t.Logf("chromium's output:\n%s", chromiumLog(logPath))
		}
	})
	return b
}

// chromiumEnv returns the environment for chromium: ours, with the variables that
// chromium would otherwise add itself while starting, set to the values it gives them.
// Chromium 148 calls setenv("FC_FONTATIONS", "1") on a worker thread while other
// threads may be in getenv; adding a variable can move the environment under them
// (its browser process died once here with SIGSEGV in getenv). Replacing a variable
// that is already there leaves the environment in place.
func chromiumEnv() []string {
	env := append(os.Environ(), "FC_FONTATIONS=1")
	if _, ok := os.LookupEnv("DBUS_SESSION_BUS_ADDRESS"); !ok {
		env = append(env, "DBUS_SESSION_BUS_ADDRESS=disabled:") // what headless chromium sets
	}
	return env
}

// chromiumLog returns the last 40 lines of chromium's output, less its complaints
// about the missing D-Bus, which headless runs do not need.
func chromiumLog(name string) string {
	b, _ := os.ReadFile(name)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.Contains(l, ":ERROR:dbus/") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// close kills the browser and its helper processes, and waits for them and for the
// reader. The profile is thrown away, so there is nothing to shut down gracefully. (Had
// the test binary died instead, chromium would exit by itself when its pipe closed.)
func (b *chromium) close() error {
	pgid := b.cmd.Process.Pid
	// The leader is not reaped yet, so the group still has its id.
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	b.cmd.Wait()
	b.in.Close()
	b.out.Close()
	<-b.done
	if err != nil {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	// The helpers die at once, but init reaps them only when it gets round to it: wait
	// until none of them is still running, so that none writes to the profile while it
	// is removed.
	for deadline := time.Now().Add(5 * time.Second); liveInGroup(pgid) > 0; {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes of group %d still running 5 s after SIGKILL", liveInGroup(pgid), pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// liveInGroup counts the processes of process group pgid that are not zombies.
func liveInGroup(pgid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, name := range stats {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
		_, rest, _ := bytes.Cut(b[bytes.LastIndexByte(b, ')')+1:], []byte(" "))
		f := strings.Fields(string(rest))
		if len(f) >= 3 && f[0] != "Z" && f[0] != "X" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

// read dispatches replies to their callers and keeps the page's uncaught exceptions,
// until the pipe closes.
func (b *chromium) read() {
	r := bufio.NewReader(b.out)
	var err error
	for {
		var line []byte
		if line, err = r.ReadBytes(0); err != nil {
			break
		}
		var m cdpMessage
		if err = json.Unmarshal(line[:len(line)-1], &m); err != nil {
			break
		}
		b.mu.Lock()
		switch {
		case m.ID != 0:
			if c := b.pending[m.ID]; c != nil {
				c <- m // buffered
				delete(b.pending, m.ID)
			}
		case m.Method == "Runtime.exceptionThrown":
			var p struct {
				Details struct {
					Text      string `json:"text"`
					URL       string `json:"url"`
					Line      int    `json:"lineNumber"`
					Exception struct {
						Description string `json:"description"`
					} `json:"exception"`
				} `json:"exceptionDetails"`
			}
			json.Unmarshal(m.Params, &p)
			d := p.Details
			b.thrown = append(b.thrown, fmt.Sprintf("%s:%d: %s %s", d.URL, d.Line+1, d.Text, d.Exception.Description))
		case m.Method == "Inspector.targetCrashed":
			b.thrown = append(b.thrown, "the page crashed")
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.readErr = err
	b.mu.Unlock()
	close(b.done)
}

func (b *chromium) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.thrown...)
}

// call sends a command, to the browser when session is "" or else to that page, and
// decodes the reply's result into result unless it is nil.
func (b *chromium) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	reply := make(chan cdpMessage, 1)
	b.pending[id] = reply
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()

	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	_, err = b.in.Write(append(data, 0))
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: write to chromium: %w", method, err)
	}
	select {
	case m := <-reply:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decode reply: %w", method, err)
			}
		}
		return nil
	case <-b.done:
		b.mu.Lock()
		err := b.readErr
		b.mu.Unlock()
		return fmt.Errorf("%s: chromium went away: %v", method, err)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (b *chromium) mustCall(ctx context.Context, t *testing.T, session, method string, params, result any) {
	t.Helper()
	if err := b.call(ctx, session, method, params, result); err != nil {
		t.Fatal(err)
	}
}

// openPage opens a new tab and returns the id of a session attached to it.
func (b *chromium) openPage(ctx context.Context, t *testing.T) string {
	t.Helper()
	var created struct {
		TargetID string `json:"targetId"`
	}
	b.mustCall(ctx, t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &created)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.mustCall(ctx, t, "", "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached)
	return attached.SessionID
}
