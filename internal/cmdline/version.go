package cmdline

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is filering's version. `make build` and `make dist` set it with -ldflags
// "-X github.com/filering/filering/internal/cmdline.version=$(git describe --tags
// --always --dirty)"; a plain go build leaves it "devel".
var version = "devel"

// BuildInfo is what `filering --version` prints: the version, then the commit and the Go
// version from the build information the Go toolchain embeds.
type BuildInfo struct {
	Version  string
	Revision string // vcs.revision; empty when built outside a checkout
	Modified bool   // vcs.modified: built from a tree with uncommitted changes
	Go       string
}

// ReadBuildInfo returns the version and what the Go toolchain embedded in the binary.
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: version, Go: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if info.GoVersion != "" {
		b.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Version == "devel" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version // go install github.com/filering/filering/cmd/filering@v1.2.3
	}
	return b
}

// Write writes the three lines of `filering --version` to w.
func (b BuildInfo) Write(w io.Writer) {
	fmt.Fprintf(w, "filering %s\n", b.Version)
	commit := b.Revision
	switch {
	case commit == "":
		commit = "unknown"
	case b.Modified:
		commit += " (modified)"
	}
	fmt.Fprintf(w, "commit %s\n", commit)
	fmt.Fprintf(w, "%s %s/%s\n", b.Go, runtime.GOOS, runtime.GOARCH)
}

func init() {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version, and exit", DisableDefaultText: true}
	cli.VersionPrinter = func(c *cli.Context) { ReadBuildInfo().Write(c.App.Writer) }
}
