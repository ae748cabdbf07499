package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/publish"
	"github.com/filering/filering/ramdisk"
)

// ramdiskCommand is `filering ramdisk`: check, mount or describe the tmpfs for rings.
func ramdiskCommand() *cli.Command {
	mountFlags := []cli.Flag{
		&cli.StringFlag{Name: "size", Usage: "`SIZE` of the tmpfs, such as 16M or 64MiB (required)"},
		&cli.StringFlag{Name: "mode", Value: "0750", Usage: "octal permission `MODE` of the tmpfs root"},
		&cli.StringFlag{Name: "user", Usage: "`USER` (name or uid) owning the tmpfs root; default root"},
		&cli.StringFlag{Name: "group", Usage: "`GROUP` (name or gid) of the tmpfs root; readers need to be in it"},
	}
	return &cli.Command{
		Name:  "ramdisk",
		Usage: "check, mount or describe the tmpfs that holds rings",
		Subcommands: []*cli.Command{
			{
				Name:        "check",
				Usage:       "tell whether DIR is on tmpfs and whether a ring fits there",
				ArgsUsage:   "DIR",
				Description: "DIR may not exist yet: its nearest existing parent is checked. Exit status 0 means DIR is\non tmpfs and the ring fits in its free space, 1 that it is not or does not, 2 a usage error.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "segment-size", Value: ramdisk.FormatSize(publish.DefaultSegmentSize), Usage: "`SIZE` of each segment of the ring"},
					&cli.IntFlag{Name: "segments", Value: publish.DefaultSegments, Usage: "how many segments the ring retains"},
					&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object"},
				},
				Action: ramdiskCheck,
			},
			{
				Name:        "mount",
				Usage:       "mount a tmpfs at DIR (needs root), creating DIR if absent",
				ArgsUsage:   "DIR",
				Description: "The tmpfs is mounted nosuid, nodev, noexec. If a tmpfs is already mounted at DIR,\nnothing is done and the exit status is 0. For a mount that survives reboots, install\nthe unit that `filering ramdisk unit` prints.",
				Flags:       mountFlags,
				Action:      ramdiskMount,
			},
			{
				Name:        "unit",
				Usage:       "print a systemd mount unit that mounts a tmpfs at DIR",
				ArgsUsage:   "DIR",
				Description: "Install the unit under the name that --name prints, for example:\n  filering ramdisk unit --size 16M /run/ring > \"/etc/systemd/system/$(filering ramdisk unit --name --size 16M /run/ring)\"",
				Flags:       append(mountFlags, &cli.BoolFlag{Name: "name", Usage: "print only the unit's file name"}),
				Action:      ramdiskUnit,
			},
		},
	}
}

// ramdiskDir returns the single DIR argument of a ramdisk subcommand.
func ramdiskDir(c *cli.Context) (string, error) {
	args := c.Args().Slice()
	if len(args) == 1 && args[0] != "" {
		return args[0], nil
	}
	for _, a := range args[min(1, len(args)):] {
		if strings.HasPrefix(a, "-") {
			return "", cli.Exit(fmt.Sprintf("filering: ramdisk %s: flags go before DIR, but %q comes after it", c.Command.Name, a), 2)
		}
	}
	return "", cli.Exit(fmt.Sprintf("filering: ramdisk %s: want exactly one DIR, got %d arguments", c.Command.Name, len(args)), 2)
}

// checkResult is what `filering ramdisk check --json` prints.
type checkResult struct {
	ramdisk.Info
	SegmentSize int64  `json:"segment_size"`
	Segments    int    `json:"segments"`
	Fits        bool   `json:"fits"`
	Problem     string `json:"problem,omitempty"` // why the exit status is 1
}

func ramdiskCheck(c *cli.Context) error {
	dir, err := ramdiskDir(c)
	if err != nil {
		return err
	}
	size, err := ramdisk.ParseSize(c.String("segment-size"))
	if err != nil {
		return cli.Exit(fmt.Sprintf("filering: --segment-size: %v", err), 2)
	}
	segments := c.Int("segments")
	if size <= 0 || segments <= 0 {
		return cli.Exit(fmt.Sprintf("filering: --segment-size %s and --segments %d must be positive", c.String("segment-size"), segments), 2)
	}
	info, err := ramdisk.Check(dir)
	if err != nil {
		return cli.Exit(fmt.Sprintf("filering: %v", err), 1)
	}

	r := checkResult{Info: info, SegmentSize: size, Segments: segments}
	fitErr := info.Fits(size, segments)
	r.Fits = fitErr == nil
	switch {
	case !info.TmpFS:
		r.Problem = fmt.Sprintf("%s is on %s (mounted at %s), not tmpfs", info.Path, info.FSType, info.MountPoint)
	case fitErr != nil:
		r.Problem = fitErr.Error()
	}

	w := c.App.Writer
	if c.Bool("json") {
		if err := json.NewEncoder(w).Encode(r); err != nil {
			return err
		}
	} else {
		where := info.Path
		if !info.Exists {
			where += " (does not exist yet)"
		}
		fmt.Fprintf(w, "dir:   %s\n", where)
		fmt.Fprintf(w, "mount: %s at %s (%s; %s)\n", info.FSType, info.MountPoint, info.Options, info.SuperOptions)
		fmt.Fprintf(w, "space: %s, %s free\n", ramdisk.FormatSize(int64(info.Size)), ramdisk.FormatSize(int64(info.Free)))
		fits := "fits"
		if !r.Fits {
			fits = "does not fit"
		}
		fmt.Fprintf(w, "ring:  %d segments of %s %s\n", segments, ramdisk.FormatSize(size), fits)
	}
	if r.Problem != "" {
		return cli.Exit("filering: "+r.Problem, 1)
	}
	return nil
}

// mountOptions reads the flags shared by `ramdisk mount` and `ramdisk unit`.
func mountOptions(c *cli.Context) (ramdisk.MountOptions, error) {
	var opts ramdisk.MountOptions
	s := c.String("size")
	if s == "" {
		return opts, cli.Exit(fmt.Sprintf("filering: ramdisk %s: --size is required", c.Command.Name), 2)
	}
	size, err := ramdisk.ParseSize(s)
	if err != nil {
		return opts, cli.Exit(fmt.Sprintf("filering: --size: %v", err), 2)
	}
	mode, err := strconv.ParseUint(c.String("mode"), 8, 32)
	if err != nil || mode > 0o777 {
		return opts, cli.Exit(fmt.Sprintf("filering: --mode %q: want octal permission bits such as 0750", c.String("mode")), 2)
	}
	opts.Size, opts.Mode = size, os.FileMode(mode)
	opts.User, opts.Group = c.String("user"), c.String("group")
	return opts, nil
}

func ramdiskMount(c *cli.Context) error {
	dir, err := ramdiskDir(c)
	if err != nil {
		return err
	}
	opts, err := mountOptions(c)
	if err != nil {
		return err
	}
	err = ramdisk.Mount(dir, opts)
	switch {
	case err == nil:
		fmt.Fprintf(c.App.Writer, "%s: mounted a tmpfs of %s\n", dir, ramdisk.FormatSize(opts.Size))
		return nil
	case errors.Is(err, ramdisk.ErrMounted):
		fmt.Fprintf(c.App.Writer, "%s: a tmpfs is already mounted there; nothing done\n", dir)
		return nil
	case errors.Is(err, ramdisk.ErrBadOptions):
		return cli.Exit(fmt.Sprintf("filering: %v", err), 2)
	default:
		return cli.Exit(fmt.Sprintf("filering: %s: %v", dir, err), 1)
	}
}

func ramdiskUnit(c *cli.Context) error {
	dir, err := ramdiskDir(c)
	if err != nil {
		return err
	}
	opts, err := mountOptions(c)
	if err != nil {
		return err
	}
	name, text, err := ramdisk.MountUnit(dir, opts)
	if err != nil {
		return cli.Exit(fmt.Sprintf("filering: %v", err), 2)
	}
	if c.Bool("name") {
		_, err = fmt.Fprintln(c.App.Writer, name)
	} else {
		_, err = fmt.Fprint(c.App.Writer, text)
	}
	return err
}
