package bench

import "time"

// The transports the benchmark compares, in the order it runs them.
const (
	transFilering = "filering"
	transBatch    = "batch"
	transSpin     = "spin"
	transRaw      = "raw"
	transPipe     = "pipe"
	transSocket   = "socket"
	transRename   = "rename"
)

// AllTransports lists the transports the benchmark knows, in the order it runs them:
// filering (Append to a ring, read by a watch.Follower woken by inotify), batch
// (AppendBatch of batchSize records, the same follower), spin (Append, read by a
// follower that spins: Follower.Spin for spinTime), raw (the least a ring in a shared
// mapping can do, the physical limit: see raw.go), a pipe, a unix stream socket, and
// rename (rewriting the recent records to a file and renaming it over the one readers
// open). takesPart says which measurements each is in.
var AllTransports = []string{transFilering, transBatch, transSpin, transRaw, transPipe, transSocket, transRename}

// batchSize is how many records the batch transport appends with one AppendBatch.
const batchSize = 64

// spinTime is how long the spin transport's follower spins before it sleeps: longer than
// the time between two records at the latency measurement's default rate, so that it
// never sleeps there.
const spinTime = 10 * time.Millisecond

// takesPart reports whether transport is in measurement measure. Batch holds records
// back until its batch is full, so it has no latency to measure; spin differs from
// filering only in its reader, so it is not measured alone; raw's reader spins and is
// as fast as the producer, so it is not in the latency measurement (see raw.go).
func takesPart(transport, measure string) bool {
	switch transport {
	case transBatch, transRaw:
		return measure != measureLatency
	case transSpin:
		return measure != measureAlone
	}
	return true
}

// ringTransport reports whether transport is a filering ring.
func ringTransport(transport string) bool {
	return transport == transFilering || transport == transBatch || transport == transSpin
}

// The measurements, in the order they run.
const (
	measureAlone   = "alone"
	measureFollow  = "follow"
	measureLatency = "latency"
)

// AllMeasures lists the measurements, in the order they run: alone (the producer with
// no reader process), follow (the producer to a reader in another process, as fast as
// it goes) and latency (send to receipt at a low rate).
var AllMeasures = []string{measureAlone, measureFollow, measureLatency}

// Every benchmark payload starts with three little-endian words, and the rest is the same
// fixed pattern for every record and every transport. Pipe, socket and rename frames put a
// 4-byte little-endian length before the payload; a ring stores the payload as it is.
const (
	payloadSeq   = 0  // u64: the record's number in the stream, from 1
	payloadSent  = 8  // i64: ns since the Unix epoch when it was sent; latency runs only
	payloadPhase = 16 // u64: phaseWarm, phaseMeasured or phaseEnd
	frameHeader  = 4
)

// MinSize and MaxSize bound the record (payload) sizes: at least the three words every
// payload starts with.
const (
	MinSize = 24
	MaxSize = 16 << 20
)

// Phases of a stream: warm-up records are not counted, the end record says that no more
// will come.
const (
	phaseWarm     = 1
	phaseMeasured = 2
	phaseEnd      = 3
)

// timeCheckEvery is how many records a throughput run sends between two readings of the
// clock. On a virtual machine a clock reading can cost a quarter of a small append.
const timeCheckEvery = 64

// Config is what a run measures, and how. `filering bench` fills it from its flags,
// which check every field; Run takes it as it is.
type Config struct {
	// Sizes are the record (payload) sizes of the alone and follow measurements, each
	// from MinSize to MaxSize.
	Sizes []int
	// Duration is how long each throughput measurement runs, after Warmup.
	Duration, Warmup time.Duration
	// Rate is the records per second of the latency measurement, Samples how many it
	// times (after a tenth as many for warm-up), LatencySize their size.
	Rate        float64
	Samples     int
	LatencySize int
	// Buffer is how many bytes of records the rename baseline rewrites on every record
	// (at least one record).
	Buffer int
	// SegmentSize and Segments describe the rings; SegmentSize is raised for large
	// records so that a segment holds at least 16.
	SegmentSize int64
	Segments    int
	// Rounds repeats every measurement, interleaved; the report gives each one's median
	// round.
	Rounds int
	// Transports and Measures are subsets of AllTransports and AllMeasures, in their
	// order.
	Transports []string
	Measures   []string
	// CPUProfile, when set, is where the producer's CPU profile is written, and each
	// reader's to CPUProfile.TRANSPORT-SIZE-MEASUREMENT.
	CPUProfile string
	// Dir is the directory the benchmark works in a new directory of, and removes that:
	// ideally on tmpfs. Empty means /dev/shm, or the temporary directory without one.
	Dir string
}
