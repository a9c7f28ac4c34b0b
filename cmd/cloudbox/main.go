// Command cloudbox is the workstation tool: it lists boards, builds disk
// images and router packages, boots images in a VM, founds communities, invites boxes and lists
// or publishes services through a box's API. Each subcommand is a thin
// layer over a library package (boards, image, image/openwrt, image/vm,
// appliance).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

var commands = []struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}{
	{"boards", "list the boards cloudbox images are built for", runBoards},
	{"image", "build a disk image: --board B --out FILE [--size 2G] [--hostname NAME]", runImage},
	{"package", "build an OpenWrt package for a router board: --board B --out DIR [--arch A] [--version V]", runPackage},
	{"vm", "boot an amd64 or arm64 image under qemu: --image FILE [--http-port 8080] [--uefi]", runVM},
	{"community", "found a community on a box: community init --state-dir DIR --name NAME [--range PREFIX]", runCommunity},
	{"invite", "print a one-time invitation: --state-dir DIR --bootstrap ADDR:PORT [--name N] [--expires 72h]", runInvite},
	{"release", "build a release: --board B --version V --out DIR; keygen, sign, trust, verify", runRelease},
	{"update", "push a release into a box: update push --to BOX_URL DIR", runUpdate},
	{"services", "list the community's services as a box sees them [--box-url URL]; publish, remove", runServices},
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cloudbox <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name != os.Args[1] {
			continue
		}
		err := c.run(ctx, os.Args[2:])
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cloudbox %s: %v\n", c.name, err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "cloudbox: unknown command %q\n", os.Args[1])
	usage()
	os.Exit(2)
}
