// Command cloudboxd is the daemon on a cloudbox. On a box, gokrazy starts it
// as /user/cloudboxd without flags; on any Linux host it runs in host mode:
//
//	cloudboxd --state-dir DIR --http 127.0.0.1:8080
//
// It runs until SIGTERM or SIGINT, then shuts down and exits 0. It exits 1
// when it cannot start or serve (gokrazy then restarts it) and 2 on a usage
// error. Logs go to stderr, which gokrazy captures.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudbox/cloudbox/appliance"
	"github.com/cloudbox/cloudbox/internal/buildinfo"
)

func main() {
	var (
		stateDir = flag.String("state-dir", appliance.DefaultStateDir,
			"directory for persistent state; its parent must exist")
		httpAddr = flag.String("http", appliance.DefaultHTTPAddr,
			"listen address of the web panel and API; port 0 picks a free port")
		board = flag.String("board", buildinfo.Board, "board name to report")
		name  = flag.String("name", "",
			"node name, used on first start only (default: the host name, else \"cloudbox\")")
		version = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Version)
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cloudboxd: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	err := appliance.Run(ctx, appliance.Config{
		StateDir: *stateDir,
		HTTPAddr: *httpAddr,
		Name:     *name,
		Board:    *board,
		Logger:   logger,
	})
	if err != nil {
		logger.Error("cloudboxd failed", "error", err)
		stop()
		os.Exit(1)
	}
}
