package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/ramdisk"
)

// alone measures the producer with no reader process.
func (b *bencher) alone(transport string, size int) (AloneResult, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return AloneResult{}, err
	}
	defer l.cleanup()
	drained := l.drain()
	res, err := pump(l.sender, newFrame(size), b.Warmup, b.Duration, false)
	var huge *float64
	if ringTransport(transport) || transport == transRaw {
		share := hugeShare(l.path)
		huge = &share
	}
	if cerr := l.close(); err == nil {
		err = cerr
	}
	<-drained
	if err != nil {
		return AloneResult{}, err
	}
	secs := res.elapsed.Seconds()
	return AloneResult{
		Size: size, Transport: transport, Records: res.sent, Seconds: secs,
		RecordsPerSec: float64(res.sent) / secs,
		MBPerSec:      float64(res.sent) * float64(size) / secs / 1e6,
		HugeShare:     huge,
	}, nil
}

// hugeShare returns the share of this process's mappings of segments in dir that the
// kernel mapped with huge pages, or -1 when it cannot tell or nothing in dir is mapped.
// A segment being prepared, still under its temporary name, is left out.
func hugeShare(dir string) float64 {
	size, huge, err := ringdir.HugeMapped(dir)
	if err != nil || size == 0 {
		return -1
	}
	return float64(huge) / float64(size)
}

// follow measures the producer sending to a reader in another process.
func (b *bencher) follow(transport string, size int) (FollowResult, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return FollowResult{}, err
	}
	defer l.cleanup()
	p, err := b.startPeer(peerConfig{Transport: transport, Path: l.path, Size: size,
		Timeout: b.Warmup + b.Duration + time.Minute, CPUProfile: b.peerProfile(transport, size, measureFollow)}, l.reader)
	if err != nil {
		l.close()
		return FollowResult{}, err
	}
	res, err := pump(l.sender, newFrame(size), b.Warmup, b.Duration, true)
	if cerr := l.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FollowResult{}, p.abandon(err)
	}
	rep, err := p.wait()
	if err != nil {
		return FollowResult{}, err
	}
	r := FollowResult{Size: size, Transport: transport, Sent: res.sent, Received: rep.Received, Lost: rep.Lost, Warmup: res.warm,
		ProducerPerSec: float64(res.sent) / res.elapsed.Seconds()}
	if ringTransport(transport) {
		r.SegmentSize, r.Segments = b.ringSegmentSize(size), b.Segments
	}
	if rep.Received > res.sent {
		return r, fmt.Errorf("the reader received %d measured records, %d were sent", rep.Received, res.sent)
	}
	end := time.Unix(0, rep.End)
	span := end.Sub(res.start) // wall clock: the reader's stamps come from another process
	r.Seconds = span.Seconds()
	r.LagMS = float64(end.Sub(res.start.Add(res.elapsed))) / 1e6
	if span > 0 {
		r.RecordsPerSec = float64(rep.Received) / span.Seconds()
		r.MBPerSec = r.RecordsPerSec * float64(size) / 1e6
	}
	return r, nil
}

// latency measures the time from send to receipt at a low rate.
func (b *bencher) latency(transport string, size int) (LatencyRow, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return LatencyRow{}, err
	}
	defer l.cleanup()
	warm := max(b.Samples/10, 1)
	expect := time.Duration(float64(warm+b.Samples) / b.Rate * float64(time.Second))
	p, err := b.startPeer(peerConfig{Transport: transport, Path: l.path, Size: size, Latency: true,
		Timeout: expect + time.Minute, CPUProfile: b.peerProfile(transport, size, measureLatency)}, l.reader)
	if err != nil {
		l.close()
		return LatencyRow{}, err
	}
	err = pace(l.sender, newFrame(size), warm, b.Samples, b.Rate)
	if cerr := l.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return LatencyRow{}, p.abandon(err)
	}
	rep, err := p.wait()
	if err != nil {
		return LatencyRow{}, err
	}
	if len(rep.Latencies) == 0 {
		return LatencyRow{}, fmt.Errorf("the reader received none of the %d timed records", b.Samples)
	}
	lat := slices.Clone(rep.Latencies)
	slices.Sort(lat)
	us := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return float64(lat[min(max(i, 0), len(lat)-1)]) / 1e3
	}
	return LatencyRow{Transport: transport, Received: len(lat), Lost: rep.Lost,
		P50: us(0.50), P90: us(0.90), P99: us(0.99), Max: us(1)}, nil
}

func (b *bencher) peerProfile(transport string, size int, measure string) string {
	if b.CPUProfile == "" {
		return ""
	}
	return fmt.Sprintf("%s.%s-%s-%s", b.CPUProfile, transport, ramdisk.FormatSize(int64(size)), measure)
}

// pumpResult describes a throughput run's measured part.
type pumpResult struct {
	warm    uint64        // warm-up records sent
	sent    uint64        // measured records sent
	start   time.Time     // just before the first measured record was sent
	elapsed time.Duration // from start to just after the last measured record was sent
}

// pump sends records as fast as s takes them: warm-up records for warm, then measured
// ones for d, then, when end is set, the end record.
func pump(s sender, f frame, warm, d time.Duration, end bool) (pumpResult, error) {
	var seq uint64
	run := func(phase uint64, d time.Duration) (pumpResult, error) {
		start := time.Now()
		deadline := start.Add(d)
		var n uint64
		for {
			for range timeCheckEvery {
				seq++
				f.set(seq, 0, phase)
				if err := s.send(f); err != nil {
					return pumpResult{}, err
				}
			}
			n += timeCheckEvery
			if now := time.Now(); !now.Before(deadline) {
				return pumpResult{sent: n, start: start, elapsed: now.Sub(start)}, nil
			}
		}
	}
	w, err := run(phaseWarm, warm)
	if err != nil {
		return pumpResult{}, err
	}
	res, err := run(phaseMeasured, d)
	res.warm = w.sent
	if err != nil || !end {
		return res, err
	}
	f.set(seq+1, 0, phaseEnd)
	return res, s.send(f)
}

// pace sends warm and then samples records at rate per second, each stamped with the
// time it is sent, and then the end record. A send that is late does not make the next
// ones closer together.
func pace(s sender, f frame, warm, samples int, rate float64) error {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	var seq uint64
	for i := range warm + samples {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		phase := uint64(phaseMeasured)
		if i < warm {
			phase = phaseWarm
		}
		seq++
		now := time.Now()
		f.set(seq, now.UnixNano(), phase)
		if err := s.send(f); err != nil {
			return err
		}
		next = next.Add(interval)
		if next.Before(now) {
			next = now.Add(interval)
		}
	}
	f.set(seq+1, time.Now().UnixNano(), phaseEnd)
	return s.send(f)
}

// frame is one benchmark record: a 4-byte little-endian length, then the payload.
type frame []byte

func newFrame(size int) frame {
	f := make(frame, frameHeader+size)
	binary.LittleEndian.PutUint32(f, uint32(size))
	for i := frameHeader + MinSize; i < len(f); i++ {
		f[i] = byte(i*131 + 7)
	}
	return f
}

// set writes the words at the start of the payload.
func (f frame) set(seq uint64, sent int64, phase uint64) {
	p := f[frameHeader:]
	binary.LittleEndian.PutUint64(p[payloadSeq:], seq)
	binary.LittleEndian.PutUint64(p[payloadSent:], uint64(sent))
	binary.LittleEndian.PutUint64(p[payloadPhase:], phase)
}
