package ringdir

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
)

// mappingKiB returns the Rss and ShmemPmdMapped, in KiB, that /proc/self/smaps shows
// for the mapping that starts at b.
func mappingKiB(t *testing.T, b []byte) (rss, huge int64) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") {
			in = strings.HasPrefix(fields[0], start)
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss = n
		case "ShmemPmdMapped:":
			huge = n
		}
	}
	return rss, huge
}

// blocks returns the 512-byte blocks allocated to f.
func blocks(t *testing.T, f *os.File) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}

// TestView_SparseFileCostsNothing maps a 1 GiB file that is a hole but for its first
// page, as a damaged or hostile segment can be, and moves a View across all of it: the
// View prepares nothing (no collapse, no prefault), so it neither fills the file's holes
// with memory nor maps more than the reader touches. Before, readers asked the kernel to
// collapse such a mapping into huge pages, which filled the whole file and mapped it: a
// reader of a ring of five such segments reached 5 GB.
func TestView_SparseFileCostsNothing(t *testing.T) {
	name := filepath.Join(filepath.Dir(ringtest.Dir(t)), "seg")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 30
	if _, err := f.WriteAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	before := blocks(t, f)
	v, err := MapView(f, size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	b := v.Bytes()
	_ = b[0] // the header page, as a reader reads it
	for off := 0; off < size; off += ReadWindow / 2 {
		v.Advance(off)
	}
	rss, _ := mappingKiB(t, b)
	if after := blocks(t, f); after != before {
		t.Errorf("the file grew from %d to %d blocks: the View filled its holes", before, after)
	}
	if rss > 64 {
		t.Errorf("%d KiB of the mapping resident after touching one page", rss)
	}
}

// TestView_ResidentBounded reads a fully allocated 64 MiB file page by page through a
// View: what the mapping keeps resident stays within three windows, and every byte
// reads right.
func TestView_ResidentBounded(t *testing.T) {
	name := filepath.Join(filepath.Dir(ringtest.Dir(t)), "seg")
	const size = 64 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i>>12 + i)
	}
	if err := os.WriteFile(name, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := MapView(f, size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	b := v.Bytes()
	var most, hugest int64
	for off := 0; off < size; off += 4096 {
		if b[off] != want[off] || b[off+4095] != want[off+4095] {
			t.Fatalf("byte %d differs from the file", off)
		}
		v.Advance(off + 4096)
		if off%(ReadWindow/4) == 0 {
			rss, huge := mappingKiB(t, b)
			most, hugest = max(most, rss), max(hugest, huge)
		}
	}
	t.Logf("at most %d KiB resident, %d KiB on huge pages (the kernel may refuse them)", most, hugest)
	if limit := int64(3*ReadWindow) >> 10; most > limit {
		t.Errorf("%d KiB of a %d MiB mapping resident while reading it; want at most %d KiB", most, size>>20, limit)
	}
	v.Release()
	if rss, _ := mappingKiB(t, b); rss > 64 {
		t.Errorf("%d KiB resident after Release", rss)
	}
}
