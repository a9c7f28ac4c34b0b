// Command benchserver runs one stream.Server on loopback for `make
// bench-stream` (bench/stream.sh and the shared stream-peers.sh harness):
// WHIP at http://ADDR/live/whip, WHEP at http://ADDR/live/whep, sessions
// under /live/session/. Media on one UDP port of 127.0.0.1. It exits on
// SIGTERM and, with -memprofile, writes a heap profile then.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/cloudbox/cloudbox/stream"
)

func main() {
	addr := flag.String("http", "127.0.0.1:8891", "`ADDR` of WHIP and WHEP")
	ice := flag.String("ice", "127.0.0.1:8192", "UDP `ADDR` of the media")
	memprofile := flag.String("memprofile", "", "write a heap profile to `FILE` at exit")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := stream.New(stream.Config{ICEUDPAddr: *ice, ICETCPAddr: "off", TURNAddr: "off", IncludeLoopback: true,
		MaxViewers: 100000, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/{name}/whip", func(w http.ResponseWriter, r *http.Request) {
		srv.ServeWHIP(w, r, r.PathValue("name"), "/"+r.PathValue("name")+"/session/", stream.PublishOptions{})
	})
	mux.HandleFunc("/{name}/whep", func(w http.ResponseWriter, r *http.Request) {
		srv.ServeWHEP(w, r, r.PathValue("name"), "/"+r.PathValue("name")+"/session/", stream.PlayOptions{})
	})
	mux.HandleFunc("/{name}/session/{id}", func(w http.ResponseWriter, r *http.Request) {
		srv.ServeSession(w, r, r.PathValue("id"))
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { srv.WriteMetrics(w) })
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			runtime.GC()
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	hs.Close()
	srv.Close()
}
