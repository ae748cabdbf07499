package cmdline

import (
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestInterspersed(t *testing.T) {
	app := NewApp([]*cli.Command{
		{Name: "cat", Flags: []cli.Flag{&cli.IntFlag{Name: "last"}}},
		{Name: "wait", Flags: []cli.Flag{&cli.Uint64Flag{Name: "after"}, &cli.DurationFlag{Name: "timeout"}}},
		{Name: "take", Flags: []cli.Flag{&cli.BoolFlag{Name: "follow"}, &cli.StringFlag{Name: "format"}}},
		{Name: "serve", Flags: []cli.Flag{&cli.StringFlag{Name: "listen"}}},
		{Name: "produce", Flags: []cli.Flag{&cli.BoolFlag{Name: "require-tmpfs"}, &cli.IntFlag{Name: "segments"}}},
		{Name: "ramdisk", Subcommands: []*cli.Command{{Name: "mount", Flags: []cli.Flag{&cli.StringFlag{Name: "size"}}}}},
	}, nil, io.Discard, io.Discard)
	cases := []struct{ in, want string }{
		{"filering cat DIR --last 5", "filering cat --last 5 DIR"},
		{"filering cat --last 5 DIR", "filering cat --last 5 DIR"},
		{"filering wait DIR --after 7 --timeout 30s", "filering wait --after 7 --timeout 30s DIR"},
		{"filering take DIR --follow --format json", "filering take --follow --format json DIR"},
		{"filering serve DIR --listen=127.0.0.1:1", "filering serve --listen=127.0.0.1:1 DIR"},
		{"filering produce DIR --require-tmpfs --segments 8", "filering produce --require-tmpfs --segments 8 DIR"},
		{"filering ramdisk mount DIR --size 16M", "filering ramdisk mount --size 16M DIR"},
		{"filering cat -- -odd-dir", "filering cat -- -odd-dir"},
		{"filering --help", "filering --help"},
		{"filering nosuch DIR --x", "filering nosuch DIR --x"},
	}
	for _, c := range cases {
		got := strings.Join(Interspersed(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("%q -> %q, want %q", c.in, got, c.want)
		}
	}
}
