package segment

import (
	"os"
	"strings"
	"testing"
)

// TestCLMULDetected: the processor's PCLMULQDQ, as /proc/cpuinfo lists it, is what
// hasCLMUL says.
func TestCLMULDetected(t *testing.T) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip(err)
	}
	var flags []string
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = strings.Fields(v)
			break
		}
	}
	if len(flags) == 0 {
		t.Skip("no flags line in /proc/cpuinfo")
	}
	want := false
	for _, f := range flags {
		want = want || f == "pclmulqdq"
	}
	if hasCLMUL != want {
		t.Fatalf("hasCLMUL %v, but /proc/cpuinfo lists pclmulqdq: %v", hasCLMUL, want)
	}
}
