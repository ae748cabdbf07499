package bench

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sender is the producer's end of a transport.
type sender interface {
	// send delivers one record, f: for filering its payload, for the others the whole frame.
	send(f frame) error
	// close ends the stream: readers see the end of the data.
	close() error
}

// link is a transport set up for one measurement.
type link struct {
	sender
	path   string   // the ring directory, or the rename baseline's directory
	reader *os.File // the read end of a pipe or socket, for a reader
	remove string   // a directory to remove at cleanup
}

// drain starts a goroutine that reads and discards what the reader end receives, for the
// pipe and socket when no reader process runs. The channel is closed when it stops, at
// the end of the stream.
func (l *link) drain() <-chan struct{} {
	done := make(chan struct{})
	if l.reader == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		fd := int(l.reader.Fd())
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return
			}
		}
	}()
	return done
}

// cleanup releases what open made and the producer has not closed.
func (l *link) cleanup() {
	if l.reader != nil {
		l.reader.Close()
	}
	if l.remove != "" {
		os.RemoveAll(l.remove)
	}
}

// open sets up transport for records of size bytes.
func (b *bencher) open(transport string, size int) (*link, error) {
	switch transport {
	case transFilering, transSpin:
		return b.openRing(size, false)
	case transBatch:
		return b.openRing(size, true)
	case transRaw:
		return b.openRaw(size)
	case transPipe:
		return openPipe()
	case transSocket:
		return openSocket()
	case transRename:
		return b.openRename(size)
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}
