package ringdir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// TestMap maps files of sizes on and off the huge page size, read-only and writable, and
// checks what the mapping shows and that writes through it reach the file.
func TestMap(t *testing.T) {
	sizes := []int64{4096, 1 << 20, 3 << 20}
	if hp := hugePageSize(); hp > 0 {
		sizes = append(sizes, hp, 2*hp)
	}
	for _, size := range sizes {
		for _, writable := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d-%v", size, writable), func(t *testing.T) {
				dir := filepath.Dir(ringtest.Dir(t))
				name := filepath.Join(dir, "seg")
				want := make([]byte, size)
				for i := range want {
					want[i] = byte(i*7 + i>>12)
				}
				if err := os.WriteFile(name, want, 0o600); err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(name, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				b, err := Map(f, size, writable)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(b)) != size || !bytes.Equal(b, want) {
					t.Fatalf("mapping of %d bytes differs from the file", size)
				}
				addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				if Huge(size) && addr%uintptr(hugePageSize()) != 0 {
					t.Errorf("mapping at %#x, not on a huge page boundary", addr)
				}
				if Huge(size) {
					// Report whether the kernel backed it with huge pages: that depends
					// on the kernel (MADV_COLLAPSE, 6.1) and on free memory.
					t.Logf("%d bytes: %d KiB mapped with huge pages", size, hugeKiB(t, dir))
				}
				if writable {
					b[size-1] ^= 0xff
					got := make([]byte, 1)
					if _, err := f.ReadAt(got, size-1); err != nil || got[0] != want[size-1]^0xff {
						t.Fatalf("a write through the mapping did not reach the file: %v", err)
					}
				}
				if err := Unmap(b); err != nil {
					t.Fatalf("Unmap: %v", err)
				}
			})
		}
	}
}

func TestMap_Short(t *testing.T) {
	name := filepath.Join(filepath.Dir(ringtest.Dir(t)), "seg")
	if err := os.WriteFile(name, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Map(f, 8192, false); !errors.Is(err, segment.ErrShort) || !strings.Contains(err.Error(), name) {
		t.Fatalf("Map beyond the end of the file: %v", err)
	}
}

// TestSeedHuge checks that a seeded file maps, and reads as zeroes, at its full size.
func TestSeedHuge(t *testing.T) {
	hp := hugePageSize()
	if hp == 0 {
		t.Skip("no transparent huge pages in this kernel")
	}
	dir := filepath.Dir(ringtest.Dir(t))
	name := filepath.Join(dir, "seg")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SeedHuge(f, 2*hp); err != nil {
		t.Fatal(err)
	}
	b, err := Map(f, 2*hp, true)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(b)
	if !bytes.Equal(b, make([]byte, 2*hp)) {
		t.Fatal("a seeded file does not read as zeroes")
	}
	t.Logf("%d KiB mapped with huge pages", hugeKiB(t, dir))
}

// hugeKiB returns how many KiB of this process's mappings of files in dir are mapped
// with huge pages.
func hugeKiB(t *testing.T, dir string) int64 {
	_, huge, err := HugeMapped(dir)
	if err != nil {
		t.Logf("smaps: %v", err)
	}
	return huge >> 10
}
