package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The pipe and the unix stream socket carry the same frames, written by an fdSender and
// read by readStream.

// openPipe sets up a pipe.
func openPipe() (*link, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe: %v", err)
	}
	return &link{sender: &fdSender{fd: p[1], name: "pipe"}, reader: os.NewFile(uintptr(p[0]), "pipe")}, nil
}

// openSocket sets up a unix stream socket pair.
func openSocket() (*link, error) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %v", err)
	}
	return &link{sender: &fdSender{fd: p[1], name: "socket"}, reader: os.NewFile(uintptr(p[0]), "socket")}, nil
}

// fdSender writes each frame to a blocking pipe or socket with one write(2), so that the
// record is with the reader's kernel buffer when send returns, as an appended record is
// in the ring.
type fdSender struct {
	fd   int
	name string
}

func (s *fdSender) send(f frame) error {
	b := []byte(f)
	for len(b) > 0 {
		n, err := unix.Write(s.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// %v, not %w: a closed reader (EPIPE) is a failure here, not the quiet end
			// of a pipeline that run treats it as.
			return fmt.Errorf("write %s: %v", s.name, err)
		}
		b = b[n:]
	}
	return nil
}

func (s *fdSender) close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %v", s.name, err)
	}
	return nil
}

// readStream reads length-prefixed frames from a pipe or socket until the end record.
func readStream(in *os.File, t *tally, ready func() error) error {
	defer in.Close()
	if err := ready(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(in, 64<<10)
	var hdr [frameHeader]byte
	buf := make([]byte, t.size)
	for !t.done {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("read %s: %v", in.Name(), err)
		}
		if n := binary.LittleEndian.Uint32(hdr[:]); n != uint32(t.size) {
			return fmt.Errorf("read %s: frame of %d bytes, want %d", in.Name(), n, t.size)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("read %s: %v", in.Name(), err)
		}
		if err := t.take(buf); err != nil {
			return err
		}
	}
	return nil
}
