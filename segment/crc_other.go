//go:build !amd64

package segment

// shortCRC reports false: hash/crc32 is as fast as anything here (on arm64 it uses the
// CRC32 instructions at any length).
func shortCRC(crc uint32, p []byte) (uint32, bool) { return 0, false }

var hasShortCRC = false
