package segment

import "hash/crc32"

// The record CRC (CRC-32, IEEE) is computed fastest, on amd64 and arm64, over a length
// that is a multiple of 16 and at least 64: hash/crc32 then folds it all with carry-less
// multiplication, where a remainder of up to 15 bytes goes a byte at a time and costs as
// much as the 64 bytes before it. The bytes a record's CRC covers (sequence number, time,
// payload) follow its commit word, which is still zero while the record is written. A
// CRC over k zero bytes and then the data, started from zeroPrefix[k] rather than 0,
// equals the CRC of the data alone: so a writer rounds the length up to a multiple of 16
// with up to 8 bytes of the commit word. See recordCRC.
var zeroPrefix [9]uint32

func init() {
	// The CRC register after a zero byte is s>>8 ^ table[s&0xff]; the top bytes of the
	// 256 table entries are all different, so the step can be undone: unzero is the
	// register before a zero byte that leaves the register at s.
	var byTop [256]byte
	for i := range 256 {
		byTop[crcTable[i]>>24] = byte(i)
	}
	unzero := func(s uint32) uint32 {
		i := byTop[s>>24]
		return (s^crcTable[i])<<8 | uint32(i)
	}
	// hash/crc32 inverts the register on the way in and out: the CRC of the data alone
	// starts from the register ^0.
	s := ^uint32(0)
	for k := 1; k < len(zeroPrefix); k++ {
		s = unzero(s)
		zeroPrefix[k] = ^s
	}
}

// shortBlocks is the most 16-byte blocks shortCRC folds itself (where it can): records
// of up to 112 bytes after their commit word. Longer ones go to hash/crc32, whose loop
// folds four blocks at a time and pays for it with a longer start.
const shortBlocks = 7

// recordCRC returns the CRC of b[from:to], given that the 8 bytes before from are zero.
func recordCRC(b []byte, from, to int) uint32 {
	n := to - from
	if k := -n & 15; k <= 8 {
		if crc, ok := shortCRC(zeroPrefix[k], b[from-k:to]); ok {
			return crc
		}
		if n >= 64 && k > 0 {
			return crc32.Update(zeroPrefix[k], crcTable, b[from-k:to])
		}
	}
	return crc32.Update(0, crcTable, b[from:to])
}
