package segment

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// IDName is the name of the file that holds a ring's identity.
const IDName = "id"

// IDLen is the length of a ring identity: 32 lowercase hexadecimal digits, 128 bits.
const IDLen = 32

// MaxIDFileSize bounds what a reader reads of an identity file: the identity and its
// newline.
const MaxIDFileSize = IDLen + 1

// NewID returns a new random ring identity.
func NewID() string {
	var b [IDLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeID returns the contents of an identity file holding id.
func EncodeID(id string) []byte { return []byte(id + "\n") }

// ParseID validates the contents of an identity file, exactly 32 lowercase hexadecimal
// digits and a newline, and returns the identity. Errors wrap ErrID.
func ParseID(b []byte) (string, error) {
	if len(b) != MaxIDFileSize || b[IDLen] != '\n' {
		return "", fmt.Errorf("%w: want %d hexadecimal digits and a newline, found %d bytes", ErrID, IDLen, len(b))
	}
	for _, c := range b[:IDLen] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("%w: %q is not a lowercase hexadecimal digit", ErrID, c)
		}
	}
	return string(b[:IDLen]), nil
}
