package ramdisk

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"4096B", 4096},
		{"4096b", 4096},
		{"64K", 64 << 10},
		{"64k", 64 << 10},
		{"64KiB", 64 << 10},
		{"64kib", 64 << 10},
		{"1M", 1 << 20},
		{"1m", 1 << 20},
		{"1MiB", 1 << 20},
		{"16M", 16 << 20},
		{"1G", 1 << 30},
		{"1g", 1 << 30},
		{"1GiB", 1 << 30},
		{"2T", 2 << 40},
		{"1PiB", 1 << 50},
		{"7EiB", 7 << 60},
		{"1.5MiB", 3 << 19},
		{"1.50M", 3 << 19},
		{"0.5K", 512},
		{"1.0G", 1 << 30},
		{"1.25K", 1280},
		{"64 KiB", 64 << 10},
		{"  16M\n", 16 << 20},
		{"007K", 7 << 10},
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807B", math.MaxInt64},
		{"7.5EiB", 15 << 59},
		{"9007199254740991.9990234375K", math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSize_errors(t *testing.T) {
	tests := []struct {
		in, why string // why is a substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"-1", "negative"},
		{"-1K", "negative"},
		{"+1", "want a number"},
		{"K", "want a number"},
		{"MiB", "want a number"},
		{"abc", "want a number"},
		{".5M", "want a number"},
		{"1.M", "digits after the decimal point"},
		{"1..5M", "digits after the decimal point"},
		{"1,5M", `unknown unit ",5M"`},
		{"1e3", `unknown unit "e3"`},
		{"0x10", `unknown unit "x10"`},
		{"64X", `unknown unit "X"`},
		{"64Ki", `unknown unit "Ki"`},
		{"64KiBB", `unknown unit "KiBB"`},
		{"1 2", `unknown unit "2"`},
		{"64kB", "ambiguous: use K or KiB"},
		{"64KB", "ambiguous: use K or KiB"},
		{"1MB", "ambiguous: use M or MiB"},
		{"1gb", "ambiguous: use G or GiB"},
		{"1.1K", "not a whole number of bytes"},
		{"1.5", "not a whole number of bytes"},
		{"0.0000001M", "not a whole number of bytes"},
		{"9223372036854775808", "too large"},
		{"99999999999999999999", "too large"},
		{"8EiB", "too large"},
		{"8589934592G", "too large"},
		{"1.00000000000000000001K", "too many decimals"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if !errors.Is(err, ErrBadSize) {
				t.Fatalf("ParseSize(%q) = %d, %v; want an error wrapping ErrBadSize", tt.in, got, err)
			}
			if !strings.Contains(err.Error(), tt.why) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("ParseSize(%q) error %q does not quote the input and say %q", tt.in, err, tt.why)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{1025, "1.0KiB"},
		{1536, "1.5KiB"},
		{2047, "1.9KiB"},
		{64 << 10, "64KiB"},
		{1 << 20, "1MiB"},
		{3 << 19, "1.5MiB"},
		{1<<20 - 1, "1023.9KiB"},
		{16 << 20, "16MiB"},
		{17956864, "17.1MiB"},
		{1 << 30, "1GiB"},
		{1 << 40, "1TiB"},
		{1 << 50, "1PiB"},
		{1 << 60, "1EiB"},
		{math.MaxInt64, "7.9EiB"},
		{-1536, "-1.5KiB"},
		{math.MinInt64, "-8EiB"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FormatSize's exact outputs (no decimal point) and its halves read back unchanged.
func TestFormatSize_parseBack(t *testing.T) {
	for _, n := range []int64{0, 1, 1023, 4096, 64 << 10, 3 << 19, 1 << 20, 16 << 20, 5 << 30, 1 << 62, 7 << 60} {
		s := FormatSize(n)
		got, err := ParseSize(s)
		if err != nil || got != n {
			t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v; want %d", n, s, got, err, n)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "64KiB", "1.5M", "16 m", "-1", "", "1.1K", "9223372036854775807", "8EiB", "1kB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrBadSize) {
				t.Fatalf("ParseSize(%q): error %v does not wrap ErrBadSize", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, n)
		}
		if out := FormatSize(n); !strings.Contains(out, ".") {
			if back, err := ParseSize(out); err != nil || back != n {
				t.Fatalf("ParseSize(%q) = %d, but FormatSize gives %q which reads as %d, %v", s, n, out, back, err)
			}
		}
	})
}

func ExampleParseSize() {
	for _, s := range []string{"4096", "64KiB", "1M", "1.5MiB", "64kB"} {
		n, err := ParseSize(s)
		fmt.Println(n, err)
	}
	// Output:
	// 4096 <nil>
	// 65536 <nil>
	// 1048576 <nil>
	// 1572864 <nil>
	// 0 ramdisk: bad size "64kB": "kB" is ambiguous: use K or KiB for 1024 bytes
}

func ExampleFormatSize() {
	fmt.Println(FormatSize(65536), FormatSize(1<<20), FormatSize(3<<19), FormatSize(1<<20+1))
	// Output: 64KiB 1MiB 1.5MiB 1.0MiB
}
