package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
)

const (
	rawName   = "raw" // the ring's file in its directory
	rawHeader = 64    // bytes before the first slot: rawMagic, then size, slots and stride (u64 each)
	rawMagic  = "RAWRING1"
)

// rawLayout is the shape of a raw ring: slots of stride bytes after the header.
type rawLayout struct {
	size   int    // payload bytes of every record
	stride int    // bytes per slot: the commit word and the payload, padded to 8
	slots  uint64 // at least 2
}

func newRawLayout(size int, total int64) (rawLayout, error) {
	l := rawLayout{size: size, stride: 8 + (size+7)&^7}
	l.slots = uint64((total - rawHeader) / int64(l.stride))
	if l.slots < 2 {
		return l, fmt.Errorf("raw ring of %d bytes cannot hold two %d-byte records", total, size)
	}
	return l, nil
}

// openRaw sets up a raw ring for records of size bytes in a new directory of the working
// directory, as large as the filering ring of the same size.
func (b *bencher) openRaw(size int) (*link, error) {
	dir, err := os.MkdirTemp(b.dir, "raw-")
	if err != nil {
		return nil, err
	}
	s, err := createRaw(filepath.Join(dir, rawName), size, int64(b.Segments)*b.ringSegmentSize(size))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &link{sender: s, path: dir, remove: dir}, nil
}

// rawSender is the producer of the raw ring, the physical limit that filering is
// measured against: the least a single producer can do to hand records to a reader in another
// process through a shared mapping of a file on tmpfs, written in the same language and
// measured in the same run as filering, with the same payloads and the same producer
// loop. The ring is one file (rawName in a new directory) holding a header (rawHeader
// bytes: the record size, the number of slots and the stride between them) and then
// fixed-size slots, each a commit word (u64) and room for one record's payload, padded to
// 8 bytes. For each record the producer
//
//   - copies the payload into the next slot, and then
//   - publishes it with one release store (atomic.StoreUint64) of the slot's commit word:
//     the record's sequence number, from 1.
//
// That is all. It does not:
//
//   - checksum anything: filering writes a CRC-32 per record, and its follower checks it;
//   - read the clock: filering stamps every record with the time;
//   - take a lock: filering's Writer is safe for concurrent use;
//   - rotate segments, write a manifest, name, create or map files while it runs: the
//     ring is created, allocated and mapped once before the measurement (on huge pages
//     where the kernel gives them, as filering's segments are), so no page table entry
//     is new during it after the first pass;
//   - frame records of varying sizes: a slot holds one record of the run's size;
//   - wake a reader: the reader spins on the next slot's commit word, then yields, then
//     sleeps 50 µs at a time while nothing comes. That costs it a core where filering's
//     follower sleeps on inotify, and makes its latency not comparable, so the latency
//     measurement leaves the raw ring out;
//   - wait for a slow reader: like filering, it overwrites the oldest records. A reader
//     notices that it was overtaken (the commit word of its slot is newer than the record
//     it wants, or that of the slot before it is new enough that the writer may have
//     been copying into its slot while it read), skips ahead, and the records it skipped
//     count as lost, found by the gap in the payloads' sequence numbers. The second check
//     relies on the order of a plain load before an atomic load, which amd64 keeps; on a
//     weaker architecture a copy torn by an overwrite could go unnoticed. It is a
//     benchmark's baseline, not a format.
//
// The ring holds as many bytes as filering's ring of the same run (--segments times the
// segment size for the record size), so that both overwrite after the same volume.
type rawSender struct {
	b      []byte // the mapping
	lay    rawLayout
	seq    uint64 // the last record's sequence number
	off    int    // the next slot's offset
	end    int    // the end of the last slot
	closed bool
}

// createRaw creates, allocates and maps a raw ring of total bytes in the file path.
func createRaw(path string, size int, total int64) (*rawSender, error) {
	lay, err := newRawLayout(size, total)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping stays
	var b []byte
	if ringdir.Huge(total) {
		// As publish does for a segment: one small page per huge page, then the
		// mapping, which asks for huge pages built from zeroes.
		if err := ringdir.SeedHuge(f, total); err != nil {
			return nil, err
		}
		if b, err = ringdir.Map(f, total, true); err != nil {
			return nil, err
		}
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, total); err != nil {
		ringdir.Unmap(b)
		return nil, fmt.Errorf("allocate %s: %v", path, err)
	}
	if b == nil {
		if b, err = ringdir.Map(f, total, true); err != nil {
			return nil, err
		}
	}
	copy(b, rawMagic)
	binary.LittleEndian.PutUint64(b[8:], uint64(lay.size))
	binary.LittleEndian.PutUint64(b[16:], lay.slots)
	binary.LittleEndian.PutUint64(b[24:], uint64(lay.stride))
	return &rawSender{b: b, lay: lay, off: rawHeader, end: rawHeader + int(lay.slots)*lay.stride}, nil
}

// commitWord returns the commit word at off in b, 8-byte aligned.
func commitWord(b []byte, off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&b[off]))
}

func (s *rawSender) send(f frame) error {
	p := f[frameHeader:]
	if len(p) != s.lay.size {
		return fmt.Errorf("raw ring: record of %d bytes, slots of %d", len(p), s.lay.size)
	}
	off := s.off
	copy(s.b[off+8:off+8+len(p)], p)
	s.seq++
	atomic.StoreUint64(commitWord(s.b, off), s.seq)
	if off += s.lay.stride; off == s.end {
		off = rawHeader
	}
	s.off = off
	return nil
}

func (s *rawSender) close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return ringdir.Unmap(s.b)
}

// readRaw reads the raw ring in dir, in order, until the end record.
func readRaw(ctx context.Context, dir string, t *tally, ready func() error) error {
	path := filepath.Join(dir, rawName)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	total, err := ringdir.FileSize(f)
	if err != nil {
		f.Close()
		return err
	}
	b, err := ringdir.Map(f, total, false)
	f.Close()
	if err != nil {
		return err
	}
	defer ringdir.Unmap(b)
	// The file is fully allocated: install its pages now, huge where they are, rather
	// than fault them in while the producer runs.
	if !ringdir.Huge(total) || unix.Madvise(b, unix.MADV_COLLAPSE) != nil {
		unix.Madvise(b, unix.MADV_POPULATE_READ)
	}
	if string(b[:8]) != rawMagic {
		return fmt.Errorf("%s: not a raw ring", path)
	}
	lay := rawLayout{size: int(binary.LittleEndian.Uint64(b[8:])), slots: binary.LittleEndian.Uint64(b[16:]),
		stride: int(binary.LittleEndian.Uint64(b[24:]))}
	if lay.size != t.size || lay.slots < 2 || lay.stride < 8+lay.size || rawHeader+int64(lay.slots)*int64(lay.stride) > total {
		return fmt.Errorf("%s: raw ring of %d slots of %d bytes for %d-byte records, want %d-byte records in %d bytes",
			path, lay.slots, lay.stride, lay.size, t.size, total)
	}
	if err := ready(); err != nil {
		return err
	}
	return readRawRing(ctx, b, lay, t)
}

// readRawRing reads records from the mapping b into t until the end record, following
// the producer as raw.go's comment describes.
func readRawRing(ctx context.Context, b []byte, lay rawLayout, t *tally) error {
	buf := make([]byte, lay.size)
	S := lay.slots
	slot := func(seq uint64) int { return rawHeader + int((seq-1)%S)*lay.stride }
	idle := 0
	for n := uint64(1); !t.done; {
		off := slot(n)
		c := atomic.LoadUint64(commitWord(b, off))
		if c < n {
			// Not written yet: spin, then yield, then sleep.
			idle++
			switch {
			case idle < 1<<12:
			case idle < 1<<13:
				runtime.Gosched()
			default:
				if idle%64 == 0 && ctx.Err() != nil {
					return fmt.Errorf("raw ring: record %d: %v", n, ctx.Err())
				}
				time.Sleep(50 * time.Microsecond)
			}
			continue
		}
		idle = 0
		if c == n {
			copy(buf, b[off+8:off+8+lay.size])
			// The writer stores record n+S-1 in the slot before before it copies record
			// n+S into this one: until then, the copy is record n whole.
			if atomic.LoadUint64(commitWord(b, slot(n+S-1))) < n+S-1 {
				if err := t.take(buf); err != nil {
					return err
				}
				n++
				continue
			}
			c = atomic.LoadUint64(commitWord(b, off))
		}
		// Overtaken: the writer is at record c or later. Skip to a quarter of the ring
		// behind it.
		n = max(n+1, c-S+1+S/4)
	}
	return nil
}
