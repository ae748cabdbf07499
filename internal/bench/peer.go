package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"time"
)

// PeerEnv carries a peer's configuration, as JSON, to the re-executed binary.
//
// The readers in another process are the running binary itself, started again
// (os.Executable) with PeerEnv set and the arguments "bench-reader TRANSPORT". Such a
// binary must hand the process to RunPeer before anything else runs, and exit with the
// status it returns:
//
//	func init() {
//		if cfg, ok := os.LookupEnv(bench.PeerEnv); ok {
//			os.Exit(bench.RunPeer(cfg))
//		}
//	}
//
// In an init function, that runs before main, and before the test runner in a test
// binary, which has no `bench-reader` command to run. cmd/filering does it so; this
// package's tests do it in TestMain.
const PeerEnv = "FILERING_BENCH_PEER"

// peerConfig tells a reader process what to read.
type peerConfig struct {
	Transport string `json:"transport"`
	// Path is the ring directory, or the rename baseline's directory. A pipe or socket
	// is the reader's descriptor 4.
	Path       string        `json:"path,omitempty"`
	Size       int           `json:"size"`
	Latency    bool          `json:"latency,omitempty"` // record the latency of every measured record
	Timeout    time.Duration `json:"timeout"`
	CPUProfile string        `json:"cpuprofile,omitempty"`
}

// peerReport is what a reader process received, written as one JSON line to its
// descriptor 3 after the line "ready".
type peerReport struct {
	Received  uint64  `json:"received"`            // measured records received
	Lost      uint64  `json:"lost"`                // records of the stream never received
	End       int64   `json:"end"`                 // ns since the epoch when the end record arrived
	Latencies []int64 `json:"latencies,omitempty"` // ns from send to receipt, measured records
}

// peer is a running reader process.
type peer struct {
	cmd    *exec.Cmd
	ctl    *os.File
	rd     *bufio.Reader
	stderr bytes.Buffer
	cancel context.CancelFunc
	forget func() // tells the bencher it has ended
}

// startPeer starts a reader process and waits until it is ready to receive. data is the
// read end of a pipe or socket, or nil.
func (b *bencher) startPeer(cfg peerConfig, data *os.File) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start reader process: %w", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	p := &peer{ctl: ctlR, rd: bufio.NewReader(ctlR), cancel: cancel}
	p.cmd = exec.CommandContext(ctx, exe, "bench-reader", cfg.Transport)
	p.cmd.Env = append(os.Environ(), PeerEnv+"="+string(js))
	p.cmd.Stderr = &p.stderr
	p.cmd.ExtraFiles = []*os.File{ctlW}
	if data != nil {
		p.cmd.ExtraFiles = append(p.cmd.ExtraFiles, data)
	}
	b.mu.Lock()
	if b.stopped {
		err = errors.New("interrupted")
	} else if err = p.cmd.Start(); err == nil {
		b.peer = p
		p.forget = func() {
			b.mu.Lock()
			b.peer = nil
			b.mu.Unlock()
		}
	}
	b.mu.Unlock()
	ctlW.Close()
	if data != nil {
		data.Close() // the reader process holds it now; the stream ends when it closes it
	}
	if err != nil {
		cancel()
		ctlR.Close()
		return nil, fmt.Errorf("start reader process: %w", err)
	}
	line, err := p.rd.ReadString('\n')
	if err != nil || line != "ready\n" {
		p.wait()
		return nil, fmt.Errorf("reader process did not start: %s", p.failure(err))
	}
	return p, nil
}

// wait waits for the reader's report and for it to exit.
func (p *peer) wait() (peerReport, error) {
	defer p.cancel()
	defer p.ctl.Close()
	if p.forget != nil {
		defer p.forget()
	}
	var rep peerReport
	derr := json.NewDecoder(p.rd).Decode(&rep)
	werr := p.cmd.Wait()
	if werr != nil {
		return rep, fmt.Errorf("reader process: %s", p.failure(werr))
	}
	if derr != nil {
		return rep, fmt.Errorf("reader process: report: %v", derr)
	}
	return rep, nil
}

// abandon stops the reader after the producer failed with err, which it returns, unless
// the reader had failed first and said why: that explains the producer's failure.
func (p *peer) abandon(err error) error {
	p.cancel()
	p.wait()
	if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
		return fmt.Errorf("reader process: %s", msg)
	}
	return err
}

// failure describes why the reader failed: what it printed, or err.
func (p *peer) failure(err error) string {
	if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
		return msg
	}
	if err == nil {
		err = errors.New("no report")
	}
	return err.Error()
}

// RunPeer is the reader process: it reads the stream that js, the value of PeerEnv,
// describes, reports what it received on its descriptor 3 and returns the exit status.
// Its errors go to standard error.
func RunPeer(js string) int {
	var cfg peerConfig
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "filering bench reader: %s: %v\n", PeerEnv, err)
		return 2
	}
	ctl := os.NewFile(3, "control")
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "filering bench reader: %v\n", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	t := &tally{size: cfg.Size, latency: cfg.Latency, next: 1}
	ready := func() error {
		_, err := io.WriteString(ctl, "ready\n")
		return err
	}
	var err error
	switch cfg.Transport {
	case transFilering, transBatch:
		err = readRing(ctx, cfg.Path, 0, t, ready)
	case transSpin:
		err = readRing(ctx, cfg.Path, spinTime, t, ready)
	case transRaw:
		err = readRaw(ctx, cfg.Path, t, ready)
	case transPipe, transSocket:
		err = readStream(os.NewFile(4, cfg.Transport), t, ready)
	case transRename:
		err = readRenamed(ctx, cfg.Path, t, ready)
	default:
		err = fmt.Errorf("unknown transport %q", cfg.Transport)
	}
	if err == nil {
		err = json.NewEncoder(ctl).Encode(t.rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "filering bench reader: %s: %v\n", cfg.Transport, err)
		return 1
	}
	return 0
}

// tally counts what a reader receives.
type tally struct {
	size    int
	latency bool
	next    uint64 // the sequence number expected next
	done    bool   // the end record arrived
	rep     peerReport
}

// take accounts for the payload p of the next record received.
func (t *tally) take(p []byte) error {
	if len(p) != t.size {
		return fmt.Errorf("record %d has %d bytes, want %d", t.next, len(p), t.size)
	}
	seq := binary.LittleEndian.Uint64(p[payloadSeq:])
	if seq < t.next {
		return fmt.Errorf("record %d after %d", seq, t.next-1)
	}
	t.rep.Lost += seq - t.next
	t.next = seq + 1
	switch binary.LittleEndian.Uint64(p[payloadPhase:]) {
	case phaseMeasured:
		t.rep.Received++
		if t.latency {
			sent := int64(binary.LittleEndian.Uint64(p[payloadSent:]))
			t.rep.Latencies = append(t.rep.Latencies, time.Now().UnixNano()-sent)
		}
	case phaseEnd:
		t.done = true
		t.rep.End = time.Now().UnixNano()
	}
	return nil
}
