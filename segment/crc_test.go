package segment

import (
	"fmt"
	"hash/crc32"
	"math/rand"
	"testing"
)

// TestRecordCRC checks recordCRC against the plain CRC for every length up to 300, with
// the zero bytes before the data that it relies on.
func TestRecordCRC(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 0; n <= 300; n++ {
		b := make([]byte, 8+n)
		rng.Read(b[8:])
		if got, want := recordCRC(b, 8, 8+n), crc32.ChecksumIEEE(b[8:]); got != want {
			t.Fatalf("%d bytes: %08x, want %08x", n, got, want)
		}
	}
}

func BenchmarkRecordCRC(b *testing.B) {
	for _, n := range []int{64 + 15, 80} {
		buf := make([]byte, 8+n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				recordCRC(buf, 8, 8+n)
			}
		})
		b.Run(fmt.Sprint(n, "/plain"), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				crc32.Update(0, crcTable, buf[8:])
			}
		})
	}
}

// TestShortCRC checks the folding of short inputs against hash/crc32 for every block
// count it takes, from random starting values.
func TestShortCRC(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for blocks := 0; blocks <= shortBlocks+1; blocks++ {
		for range 200 {
			p := make([]byte, 16*blocks)
			rng.Read(p)
			init := rng.Uint32()
			got, ok := shortCRC(init, p)
			if !ok {
				if blocks >= 1 && blocks <= shortBlocks && hasShortCRC {
					t.Fatalf("%d blocks: not taken", blocks)
				}
				continue
			}
			if want := crc32.Update(init, crcTable, p); got != want {
				t.Fatalf("%d blocks from %08x: %08x, want %08x", blocks, init, got, want)
			}
		}
	}
}
