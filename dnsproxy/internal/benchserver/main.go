// Command benchserver runs a dnsproxy.Server as the "ours" row of the
// shared DNS peer benchmark (bench/dns-peers.sh): it reads the benchmark's
// DNSB_* environment, serves DNSB_ZONE from the hosts file in the auth
// scenario and forwards to DNSB_UPSTREAM in the cache scenario, until
// SIGTERM. It is a tool for measuring, not a daemon.
//
//	go build -o /tmp/dnsbench/benchserver ./dnsproxy/internal/benchserver
//	cp ../shared/bench/dns-peers.sh /tmp/dnsbench/   # its bin/ and results/ land beside it
//	OURS_CMD='exec /tmp/dnsbench/benchserver' OURS_NAME=cloudbox \
//	  SERVERS="dnsmasq coredns unbound ours" RESULTS_DIR=/tmp/dnsbench/results \
//	  bash /tmp/dnsbench/dns-peers.sh
//
// Without the environment it takes flags, for trying the server by hand:
//
//	benchserver -listen 127.0.0.1:5353 -hosts hosts.txt -zone mesh.test.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudbox/cloudbox/dnsproxy"
)

func main() {
	listen := flag.String("listen", net.JoinHostPort(env("DNSB_ADDR", "127.0.0.1"), env("DNSB_PORT", "5353")), "address to serve UDP and TCP on")
	mode := flag.String("mode", env("DNSB_MODE", "auth"), "auth (serve the zone) or cache (forward to -upstream)")
	zone := flag.String("zone", env("DNSB_ZONE", "mesh.test."), "community zone")
	hosts := flag.String("hosts", os.Getenv("DNSB_HOSTSFILE"), "hosts file (\"address name\" lines) with the zone's names")
	upstream := flag.String("upstream", env("DNSB_UPSTREAM", ""), "upstream resolver for the cache scenario")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, logger, *listen, *mode, *zone, *hosts, *upstream); err != nil {
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

func run(ctx context.Context, logger *slog.Logger, listen, mode, zone, hostsFile, upstream string) error {
	cfg := dnsproxy.Config{Logger: logger, Listen: []string{listen}, Domain: zone}
	switch mode {
	case "auth":
		if hostsFile == "" {
			return errors.New("auth mode needs -hosts (DNSB_HOSTSFILE)")
		}
		z, err := readHosts(hostsFile, zone)
		if err != nil {
			return err
		}
		cfg.Zone = z
	case "cache":
		if upstream == "" {
			return errors.New("cache mode needs -upstream (DNSB_UPSTREAM)")
		}
		cfg.Upstreams = []string{upstream}
	default:
		return fmt.Errorf("unknown mode %q: use auth or cache", mode)
	}
	srv, err := dnsproxy.New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// readHosts reads "address name..." lines; names under zone become hosts.
func readHosts(path, zone string) (dnsproxy.Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return dnsproxy.Zone{}, fmt.Errorf("reading hosts: %w", err)
	}
	defer f.Close()
	suffix := "." + strings.TrimSuffix(strings.ToLower(zone), ".")
	byName := map[string]int{}
	var z dnsproxy.Zone
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			return z, fmt.Errorf("reading hosts: %q: %w", sc.Text(), err)
		}
		for _, n := range fields[1:] {
			rel, ok := strings.CutSuffix(strings.TrimSuffix(strings.ToLower(n), "."), suffix)
			if !ok {
				continue
			}
			i, ok := byName[rel]
			if !ok {
				i = len(z.Hosts)
				byName[rel] = i
				z.Hosts = append(z.Hosts, dnsproxy.Host{Name: rel})
			}
			z.Hosts[i].Addrs = append(z.Hosts[i].Addrs, a)
		}
	}
	if err := sc.Err(); err != nil {
		return z, fmt.Errorf("reading hosts: %w", err)
	}
	return z, nil
}
