// Command voipnode runs one stream/voip Server (SIP registrar, proxy and
// media relay) as the "ours" row of the shared VoIP peer benchmark
// (voip-peers.sh, through its OURS_CMD hook; see bench/voip.sh). It is a
// tool for measuring, not a daemon: it serves until SIGTERM.
//
//	voipnode -listen 127.0.0.6:5060 -domain cloudbox.test -rtp 127.0.0.7 \
//	    -rtp-min 10000 -rtp-max 60000 [-password secret]
//
// With -password every REGISTER is challenged (digest, realm = domain) and
// any user with that password is accepted, as the harness expects.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudbox/cloudbox/stream/voip"
)

func main() {
	listen := flag.String("listen", "127.0.0.6:5060", "SIP `ADDR` (UDP and TCP)")
	domain := flag.String("domain", "cloudbox.test", "SIP domain and digest realm")
	rtp := flag.String("rtp", "", "media relay `IP` (empty: all addresses)")
	rtpMin := flag.Uint("rtp-min", voip.DefaultRelayPortMin, "lowest relay port")
	rtpMax := flag.Uint("rtp-max", voip.DefaultRelayPortMax, "highest relay port")
	password := flag.String("password", "", "challenge REGISTERs; every user has this password (empty: no authentication)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := voip.Config{Addr: *listen, Domain: *domain, Logger: logger,
		Relay: voip.RelayConfig{PortMin: uint16(*rtpMin), PortMax: uint16(*rtpMax)}}
	if *rtp != "" {
		a, err := netip.ParseAddr(*rtp)
		if err != nil {
			fmt.Fprintf(os.Stderr, "voipnode: -rtp: %v\n", err)
			os.Exit(2)
		}
		cfg.Relay.Addr = a
	}
	if pw := *password; pw != "" {
		cfg.Password = func(string) (string, bool) { return pw, true }
	}
	s, err := voip.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "voipnode: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "voipnode: %v\n", err)
		os.Exit(1)
	}
}
