package cmdline

import (
	"bytes"
	"runtime"
	"testing"
)

func TestBuildInfoWrite(t *testing.T) {
	var b bytes.Buffer
	BuildInfo{Version: "v1.2.3", Revision: "abc123", Modified: true, Go: "go1.99"}.Write(&b)
	want := "filering v1.2.3\ncommit abc123 (modified)\ngo1.99 " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
