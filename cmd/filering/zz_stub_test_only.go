package main

import "github.com/urfave/cli/v2"

func ramdiskCommand() *cli.Command { return &cli.Command{Name: "ramdisk"} }
