package ramdisk

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// sizeUnits are the binary units ParseSize reads and FormatSize prints, largest first.
var sizeUnits = []struct {
	name  string // the suffix FormatSize prints
	short string // the one-letter suffix, lowercase
	bytes uint64
}{
	{"EiB", "e", 1 << 60},
	{"PiB", "p", 1 << 50},
	{"TiB", "t", 1 << 40},
	{"GiB", "g", 1 << 30},
	{"MiB", "m", 1 << 20},
	{"KiB", "k", 1 << 10},
}

// ParseSize reads a size in bytes: a decimal number followed by an optional unit, with
// optional spaces between them. The units are binary and case-insensitive: K or KiB is
// 1024 bytes, M or MiB 1024², and so on through G, T, P and E; B or no unit means bytes.
// Decimal units such as "kB" or "MB" are refused, since they read as 1000 to some people
// and 1024 to others. A fraction is allowed if the result is a whole number of bytes
// ("1.5MiB", but not "1.1K").
//
// ParseSize accepts 0; callers check their own bounds. Any other input (empty, negative,
// too large for int64, or garbage) gives an error wrapping [ErrBadSize] that quotes s.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%w %q: %s", ErrBadSize, s, err)
	}
	return n, nil
}

// parseSize does ParseSize's work and returns a bare reason on failure.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("negative")
	}
	whole, rest := leadingDigits(s)
	if whole == "" {
		return 0, fmt.Errorf("want a number, then an optional unit such as KiB or M")
	}
	var frac string
	if strings.HasPrefix(rest, ".") {
		frac, rest = leadingDigits(rest[1:])
		if frac == "" {
			return 0, fmt.Errorf("want digits after the decimal point")
		}
		frac = strings.TrimRight(frac, "0")
	}
	unit, err := parseUnit(strings.TrimSpace(rest))
	if err != nil {
		return 0, err
	}

	w, err := strconv.ParseUint(whole, 10, 64)
	hi, n := bits.Mul64(w, unit)
	if err != nil || hi != 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	if frac != "" {
		if len(frac) > 19 {
			return 0, fmt.Errorf("too many decimals")
		}
		f, _ := strconv.ParseUint(frac, 10, 64) // at most 19 digits: fits
		pow := uint64(1)
		for range frac {
			pow *= 10
		}
		// f < pow, so f*unit/pow < unit and the high word is below pow: Div64 cannot panic.
		fhi, flo := bits.Mul64(f, unit)
		q, r := bits.Div64(fhi, flo, pow)
		if r != 0 {
			return 0, fmt.Errorf("not a whole number of bytes")
		}
		// q < unit, and MaxInt64+1 is a multiple of unit, so n+q <= MaxInt64.
		n += q
	}
	return int64(n), nil
}

// leadingDigits splits s after its leading ASCII digits.
func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// parseUnit returns the number of bytes in a unit suffix.
func parseUnit(u string) (uint64, error) {
	l := strings.ToLower(u)
	if l == "" || l == "b" {
		return 1, nil
	}
	for _, su := range sizeUnits {
		switch l {
		case su.short, su.short + "ib":
			return su.bytes, nil
		case su.short + "b":
			return 0, fmt.Errorf("%q is ambiguous: use %s or %s for %d bytes",
				u, strings.ToUpper(su.short), su.name, su.bytes)
		}
	}
	return 0, fmt.Errorf("unknown unit %q (want B, K, KiB, M, MiB, G, GiB, ...)", u)
}

// FormatSize prints n bytes in the largest binary unit not above it: "512B", "64KiB",
// "1MiB", "1.5MiB". The result is exact, and ParseSize reads it back to n, when it has no
// decimal point; otherwise it is rounded down to one decimal, so "1.0MiB" means a little
// over 1MiB.
func FormatSize(n int64) string {
	if n < 0 {
		return "-" + formatSize(uint64(^n)+1)
	}
	return formatSize(uint64(n))
}

// formatSize does FormatSize's work on a magnitude.
func formatSize(n uint64) string {
	for _, su := range sizeUnits {
		if n < su.bytes {
			continue
		}
		whole, rem := n/su.bytes, n%su.bytes
		if rem == 0 {
			return fmt.Sprintf("%d%s", whole, su.name)
		}
		// rem < 2^60, so rem*10 cannot overflow.
		return fmt.Sprintf("%d.%d%s", whole, rem*10/su.bytes, su.name)
	}
	return fmt.Sprintf("%dB", n)
}
