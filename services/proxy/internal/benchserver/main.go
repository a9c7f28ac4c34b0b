// Command benchserver runs a proxy.Proxy without authentication as the
// "ours" row of the shared proxy peer benchmark (proxy-peers.sh, through
// bench/proxy.sh): it reads the harness's PROXY_* environment, serves the
// HTTP proxy on PROXY_LISTEN and SOCKS5 on PROXY_ADDR:SOCKS_PORT, allows
// clients and destinations in PROXY_ALLOW and every port, until SIGTERM.
// It is a tool for measuring, not a daemon.
//
//	go build -o /tmp/benchserver ./services/proxy/internal/benchserver
//	PROXY_LISTEN=127.0.0.1:3128 SOCKS_PORT=1080 PROXY_ADDR=127.0.0.1 /tmp/benchserver
package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudbox/cloudbox/services/proxy"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, logger); err != nil {
		logger.Error("benchserver failed", "error", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, logger *slog.Logger) error {
	var allow []netip.Prefix
	for s := range strings.SplitSeq(env("PROXY_ALLOW", "127.0.0.0/8"), ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		allow = append(allow, p)
	}
	cfg := proxy.Config{
		Logger:              logger,
		HTTPAddrs:           []string{env("PROXY_LISTEN", "127.0.0.1:3128")},
		AllowedSources:      allow,
		AllowedDestinations: allow,
		AnyPort:             true,
	}
	if port := os.Getenv("SOCKS_PORT"); port != "" {
		cfg.SOCKSAddrs = []string{net.JoinHostPort(env("PROXY_ADDR", "127.0.0.1"), port)}
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
