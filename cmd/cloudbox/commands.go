package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image"
	"github.com/cloudbox/cloudbox/image/openwrt"
	"github.com/cloudbox/cloudbox/image/vm"
)

func runBoards(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boards", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BOARD\tARCH\tBUILDS\tDESCRIPTION")
	for _, b := range boards.All() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Name, b.GOARCH, b.Kind(), b.Description)
	}
	return tw.Flush()
}

func runImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	board := fs.String("board", "", "board to build for (see `cloudbox boards`)")
	out := fs.String("out", "", "image file to write")
	size := fs.String("size", "2G", "disk image size, e.g. 2G or 1500M")
	hostname := fs.String("hostname", "cloudbox", "initial name of the box")
	version := fs.String("version", "dev", "cloudbox version to stamp into the image")
	trust := fs.String("release-trust", "", "release trust `FILE` (cloudbox release trust) the box starts with")
	token := fs.String("admin-token", "", "`FILE` with an API token (32+ characters) the box accepts as an administrator's; for test images only, everyone with the image has it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	b, err := boards.Lookup(*board)
	if *board == "" {
		return fmt.Errorf("no board given: pass --board (one of %v)", boards.Names())
	}
	if err != nil {
		return err
	}
	n, err := image.ParseSize(*size)
	if err != nil {
		return err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	res, err := image.Build(ctx, image.Config{
		Board: b, Out: *out, Size: n, Hostname: *hostname, Version: *version, ReleaseTrust: *trust,
		AdminTokenFile: *token, SourceDateEpoch: epoch, Logger: slog.Default(),
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s  %s (%s, %d MiB, root %d MiB, /perm %d MiB)\n", res.SHA256, res.Path, b.Name, res.Size>>20, res.RootBytes>>20, res.PermSize>>20)
	return nil
}

func runPackage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	board := fs.String("board", "", "router board to build for (openwrt-*, see `cloudbox boards`)")
	out := fs.String("out", "", "directory to write the .ipk to")
	arch := fs.String("arch", "", "opkg architecture of the router (`opkg print-architecture`; default: the board's)")
	version := fs.String("version", "dev", "cloudbox version to stamp into the package")
	trust := fs.String("release-trust", "", "release trust `FILE` (cloudbox release trust) the router starts with, installed as "+openwrt.TrustPath)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *board == "" {
		return fmt.Errorf("no board given: pass --board (one of %v)", boards.Names())
	}
	b, err := boards.Lookup(*board)
	if err != nil {
		return err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	res, err := openwrt.Build(ctx, openwrt.Config{
		Board: b, OutDir: *out, Arch: *arch, Version: *version, ReleaseTrust: *trust,
		SourceDateEpoch: epoch, Logger: slog.Default(),
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s  %s (%s, %d bytes; cloudboxd %d bytes stripped)\n", res.SHA256, res.Path, b.Name, res.Size, res.BinarySize)
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH: zero when unset.
func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	epoch, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: want Unix seconds", s)
	}
	return epoch, nil
}

func runVM(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vm", flag.ContinueOnError)
	img := fs.String("image", "", "disk image to boot (amd64 or arm64 board)")
	port := fs.Int("http-port", 8080, "port on 127.0.0.1 forwarded to the panel")
	mem := fs.Int("memory", 1024, "guest memory in MiB")
	quiet := fs.Bool("quiet", false, "do not show the serial console")
	uefi := fs.Bool("uefi", false, "boot through UEFI firmware (OVMF) and the image's boot manager, as a PC does (amd64)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *img == "" {
		return fmt.Errorf("no image given: pass --image FILE (build one with `cloudbox image`)")
	}
	cfg := vm.Config{Image: *img, HTTPPort: *port, Memory: *mem, Console: os.Stdout, UEFI: *uefi, Logger: slog.Default()}
	if *quiet {
		cfg.Console = nil
	}
	fmt.Fprintf(os.Stderr, "booting %s; panel at http://127.0.0.1:%d/ once it is up; Ctrl-C stops the VM\n", *img, *port)
	start := time.Now()
	err := vm.Run(ctx, cfg)
	slog.Info("vm ended", "ran", time.Since(start).Round(time.Second))
	return err
}
