// Command cloudboxd is the daemon on a cloudbox. On a box, gokrazy starts it
// as /user/cloudboxd without flags; on any Linux host it runs in host mode:
//
//	cloudboxd --state-dir DIR --http 127.0.0.1:8080 [--join TOKEN]
//
// When the box is a member of a community (see `cloudbox community init`
// and `cloudbox invite`), it runs the overlay: the TUN interface
// --overlay-interface and UDP and TCP port --overlay-port, which needs
// CAP_NET_ADMIN and /dev/net/tun. --join redeems an invitation on start if
// the box is not a member yet.
//
// It answers DNS on --dns (default: every address, UDP and TCP port 53):
// the community zone (cb.home.arpa.: every member by name) and, for other
// names, a caching forwarder to --dns-upstreams or the resolvers of
// /etc/resolv.conf. --dns off turns it off. On the LAN interface --mdns it
// speaks mDNS: <name>.local, its services and the community's, and it
// publishes LAN services of the --mdns-browse types to the community.
//
// With --gateway the box shares its uplink with the community: an HTTP proxy
// (--gateway-http) and SOCKS5 (--gateway-socks) for members, with the
// fair-use limits --gateway-user-rate, --gateway-user-conns,
// --gateway-daily-quota and --gateway-total-rate. Every box serves the PAC
// file /proxy.pac and a local proxy port (--gateway-local, "off" to close)
// that forwards to the best gateway. A gateway checks its uplink by dialling
// --gateway-probe every 30 s and publishes the result; it keeps no access
// log unless --gateway-log names the fields to keep (for
// --gateway-log-days days, under the state directory).
//
// The panel answers over HTTPS on --https (default :443 on a box) with a
// certificate of the box's own authority, which the panel offers for
// download (/certificate).
//
// Live streams (WHIP and RTP in, WHEP out, relayed between boxes) carry
// their media on --stream-ice (UDP and TCP, default :8189; "off" turns
// streaming off); a built-in TURN server listens on --stream-turn (UDP
// :3478, "off").
//
// A fresh box serves only its setup wizard, which asks for the one-time
// setup code that cloudboxd logs at start and writes to --setup-code-file;
// --api-token-file names an administrator's API token for automation.
//
// It runs until SIGTERM or SIGINT, then shuts down and exits 0. It exits 1
// when it cannot start or serve (gokrazy then restarts it), including a join
// token that is invalid, expired or refused, and 2 on a usage error. Logs go
// to stderr, which gokrazy captures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cloudbox/cloudbox/appliance"
	"github.com/cloudbox/cloudbox/internal/buildinfo"
	"github.com/cloudbox/cloudbox/services/proxy"
)

func main() {
	var (
		stateDir = flag.String("state-dir", appliance.DefaultStateDir,
			"directory for persistent state; its parent must exist")
		httpAddr = flag.String("http", appliance.DefaultHTTPAddr,
			"listen address of the web panel and API; port 0 picks a free port")
		httpsAddr = flag.String("https", "",
			"listen `ADDR` of the panel and API over HTTPS with the box's own certificate, or \"off\" (default: "+appliance.DefaultHTTPSAddr+" on a box, off in host mode)")
		board = flag.String("board", buildinfo.Board, "board name to report")
		name  = flag.String("name", "",
			"node name, used on first start only (default: the host name, else \"cloudbox\")")
		overlayPort = flag.Uint("overlay-port", appliance.DefaultOverlayPort,
			"UDP port of the overlay mesh; the roster's join service listens on the same TCP port")
		overlayIf = flag.String("overlay-interface", appliance.DefaultOverlayInterface,
			"name of the overlay's TUN interface")
		join = flag.String("join", "",
			"invitation `TOKEN` to redeem on start when this box is not a member of a community yet")
		dnsListen = flag.String("dns", appliance.DefaultDNSListen,
			"comma-separated `ADDRS` the DNS server answers on (UDP and TCP), or \"off\"")
		dnsUpstreams = flag.String("dns-upstreams", "",
			"comma-separated resolvers for names outside the community zone (default: those of /etc/resolv.conf)")
		mdnsIf = flag.String("mdns", "auto",
			"LAN `INTERFACE` for mDNS (the box's name and the community's services), \"auto\" for the first LAN interface, or \"off\"")
		mdnsBrowse = flag.String("mdns-browse", "",
			"comma-separated service `TYPES` found on the LAN by mDNS to publish to the community, e.g. _ipp._tcp")
		setupCode = flag.String("setup-code-file", "",
			"`FILE` the first-boot wizard's setup code is written to (default: setup-code.txt in --state-dir)")
		tokenFile = flag.String("api-token-file", "",
			"`FILE` holding an API token (32+ characters) accepted as an administrator's, for automation")
		gateway     = flag.Bool("gateway", false, "share this box's Internet connection with the community (HTTP proxy and SOCKS5)")
		gwHTTP      = flag.String("gateway-http", appliance.DefaultGatewayHTTPAddr, "`ADDR` of the gateway's HTTP proxy")
		gwSOCKS     = flag.String("gateway-socks", appliance.DefaultGatewaySOCKSAddr, "`ADDR` of the gateway's SOCKS5, or \"off\"")
		gwLocal     = flag.String("gateway-local", appliance.DefaultGatewayLocalAddr, "`ADDR` of the local proxy port that forwards to the best gateway, or \"off\"")
		gwFed       = flag.String("gateway-federation", "community", "whose users the gateway serves: community, own, or comma-separated node `IDS`")
		gwRate      = flag.Int64("gateway-user-rate", 0, "per-user bandwidth limit in `BYTES` per second and direction (0: none)")
		gwConns     = flag.Int("gateway-user-conns", 0, "per-user limit of concurrent connections (0: none)")
		gwQuota     = flag.Int64("gateway-daily-quota", 0, "per-user daily quota in `BYTES` (0: none)")
		gwTotalRate = flag.Int64("gateway-total-rate", 0, "bandwidth cap of all users together in `BYTES` per second and direction (0: none)")
		gwLog       = flag.String("gateway-log", "", "comma-separated `FIELDS` of the gateway's access log, e.g. time,user,box,host,status,bytes (of "+strings.Join(proxy.AccessLogFields, ",")+"; empty: no access log)")
		gwLogDays   = flag.Int("gateway-log-days", proxy.DefaultAccessLogDays, "`DAYS` of gateway access log kept")
		gwProbe     = flag.String("gateway-probe", strings.Join(appliance.DefaultGatewayProbes, ","), "comma-separated TCP `ADDRS` the gateway dials to check its uplink")
		updChannel  = flag.String("update-channel", "", "release `CHANNEL` to follow (default stable; \"off\": no updates)")
		updRate     = flag.Int64("update-rate", 0, "bandwidth cap of updates in `BYTES` per second, fetched and served each (0: none)")
		version     = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if failStart != "" {
		// A test release's broken daemon (see failStart).
		fmt.Fprintln(os.Stderr, "cloudboxd: built to fail:", failStart)
		os.Exit(1)
	}
	if *version {
		fmt.Println(buildinfo.Version)
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cloudboxd: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if *overlayPort == 0 || *overlayPort > 65535 {
		fmt.Fprintf(os.Stderr, "cloudboxd: --overlay-port %d is not a port number (1 to 65535)\n", *overlayPort)
		os.Exit(2)
	}

	fed, fedBoxes := federation(*gwFed)
	logFields, err := proxy.ParseAccessLogFields(*gwLog)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloudboxd: --gateway-log: %v\n", err)
		os.Exit(2)
	}
	if *gwLogDays < 1 {
		fmt.Fprintf(os.Stderr, "cloudboxd: --gateway-log-days %d: at least 1\n", *gwLogDays)
		os.Exit(2)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	cfg := appliance.Config{
		StateDir: *stateDir,
		HTTPAddr: *httpAddr,
		// HTTPS by default on a box only: host-mode daemons side by side
		// would all want port 443.
		HTTPSAddr: httpsListen(*httpsAddr, *stateDir),
		Name:      *name,
		Board:     *board,
		Logger:    logger,

		SetupCodeFile: *setupCode,
		// On a box (state in /perm) the setup code also goes to the
		// HDMI screen and serial port.
		SetupCodeConsole: boxConsole(*stateDir),
		AdminTokenFile:   boxTokenFile(*tokenFile, *stateDir),
		Overlay: appliance.OverlayConfig{
			ListenPort:    uint16(*overlayPort),
			InterfaceName: *overlayIf,
			JoinToken:     *join,
		},
		MDNS: appliance.MDNSConfig{
			Disabled:  *mdnsIf == "off",
			Interface: mdnsInterface(*mdnsIf),
			Browse:    splitList(*mdnsBrowse),
		},
		Gateway: appliance.GatewayConfig{
			Enabled: *gateway, HTTPAddr: *gwHTTP, SOCKSAddr: *gwSOCKS, NoSOCKS: *gwSOCKS == "off",
			LocalAddr: strings.Join(splitList(*gwLocal), ","), Federation: fed, FederatedBoxes: fedBoxes,
			UserRate: *gwRate, UserMaxConns: *gwConns, UserDailyQuota: *gwQuota, TotalRate: *gwTotalRate,
			LogFields: logFields, LogDays: *gwLogDays, Probes: splitList(*gwProbe),
		},
		DNS: appliance.DNSConfig{
			Disabled:  *dnsListen == "off",
			Listen:    splitList(*dnsListen),
			Upstreams: splitList(*dnsUpstreams),
		},
	}
	cfg.Update = appliance.UpdateConfig{Off: *updChannel == "off", Channel: *updChannel, RateLimit: *updRate}
	if err := profileFlags(&cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cloudboxd: %v\n", err)
		os.Exit(2)
	}
	// A restored backup takes effect when Run starts again.
	for err = appliance.Run(ctx, cfg); errors.Is(err, appliance.ErrRestart); err = appliance.Run(ctx, cfg) {
		logger.Info("restarting")
	}
	// A router's update: exec its new (or previous) cloudboxd.
	err = appliance.ReplaceProcess(err)
	if err != nil {
		logger.Error("cloudboxd failed", "error", err)
		stop()
		os.Exit(1)
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" && item != "off" {
			out = append(out, item)
		}
	}
	return out
}

// federation parses --gateway-federation.
func federation(v string) (proxy.Federation, []string) {
	switch v {
	case "community":
		return proxy.FederateCommunity, nil
	case "own":
		return proxy.FederateOwn, nil
	}
	return proxy.FederateList, splitList(v)
}

// mdnsInterface is the interface of --mdns: "" for "auto" (and "off",
// which disables mDNS anyway).
func mdnsInterface(flagValue string) string {
	if flagValue == "auto" || flagValue == "off" {
		return ""
	}
	return flagValue
}

// boxConsole is the console the setup code is shown on: /dev/console when
// cloudboxd runs on a box (its state in /perm), none in host mode.
func boxConsole(stateDir string) string {
	if stateDir == appliance.DefaultStateDir {
		return "/dev/console"
	}
	return ""
}

// httpsListen is the address of --https: DefaultHTTPSAddr on a box when the
// flag is empty, none in host mode or with "off".
func httpsListen(flagValue, stateDir string) string {
	switch {
	case flagValue == "off":
		return ""
	case flagValue == "" && stateDir == appliance.DefaultStateDir:
		return appliance.DefaultHTTPSAddr
	}
	return flagValue
}
