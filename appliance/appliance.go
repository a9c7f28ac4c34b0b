package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/dnsproxy"
	"github.com/cloudbox/cloudbox/internal/buildinfo"
	"github.com/cloudbox/cloudbox/internal/plainhttp"
	"github.com/cloudbox/cloudbox/services"
)

// DefaultStateDir is where the state lives on a box (gokrazy's /perm).
const DefaultStateDir = state.DefaultDir

// DefaultHTTPAddr is the address of the panel and API on a box.
const DefaultHTTPAddr = ":80"

// DefaultShutdownTimeout bounds the graceful HTTP shutdown, well inside
// gokrazy's SIGTERM to SIGKILL window.
const DefaultShutdownTimeout = 5 * time.Second

// Server timeouts. Requests are small; slow clients must not hold
// connections forever.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Config configures Run. The zero value runs the daemon as on a box: state in
// DefaultStateDir, HTTP on DefaultHTTPAddr, facts from package buildinfo.
type Config struct {
	// StateDir is the directory for persistent state; its parent must exist.
	// Zero means DefaultStateDir.
	StateDir string

	// Name is the node name used on first start only, when the identity is
	// created. Zero means the host name, else "cloudbox".
	Name string

	// HTTPAddr is the TCP address the panel and API listen on, e.g.
	// "127.0.0.1:8080"; port 0 picks a free port, logged as "http listening"
	// with attribute addr. Zero means DefaultHTTPAddr. Ignored if Listener is
	// set.
	HTTPAddr string

	// Listener, if not nil, is used instead of listening on HTTPAddr. Run
	// closes it before returning.
	Listener net.Listener

	// HTTPSAddr is the TCP address the panel and API listen on over HTTPS,
	// with a certificate of the box's own authority (see TLSDir), e.g.
	// DefaultHTTPSAddr; port 0 picks a free port, logged as "https
	// listening" with attribute addr. Zero means no HTTPS (cloudboxd
	// passes DefaultHTTPSAddr on a box). Ignored if HTTPSListener is set.
	HTTPSAddr string

	// HTTPSListener, if not nil, is used for HTTPS instead of listening on
	// HTTPSAddr. Run closes it before returning.
	HTTPSListener net.Listener

	// Version and Board are reported by the API, metrics and panel. Zero
	// means buildinfo.Version and buildinfo.Board.
	Version string
	Board   string

	// Components adds entries to the "components" status, by name, next to
	// the ones Run registers itself. A name Run already uses ("state",
	// "overlay", "dns", "catalog", "mdns", "gateway", "https", "storage", "update", "stream", "voip") is an error. Nil adds none. The functions are called
	// concurrently.
	Components map[string]StatusFunc

	// Overlay configures the overlay: the encrypted mesh between the boxes
	// of a community. The zero value runs it with the defaults when the
	// box is a member of a community and leaves it off otherwise (no TUN
	// device or root needed then); see OverlayConfig.
	Overlay OverlayConfig

	// DNS configures the DNS server: the community zone and a caching
	// forwarder. The zero value answers on every address, port 53; see
	// DNSConfig.
	DNS DNSConfig

	// MDNS configures mDNS on the LAN: the box's name and services, the
	// community's services as a discovery proxy, and LAN services into the
	// catalog. The zero value runs it on the first LAN interface; see
	// MDNSConfig.
	MDNS MDNSConfig

	// Gateway configures the shared Internet gateway (off unless
	// Enabled) and the local proxy port every box offers; see
	// GatewayConfig.
	Gateway GatewayConfig

	// Update configures updates over the mesh; see UpdateConfig.
	Update UpdateConfig
	// Storage configures the shared folders (WebDAV) and the community
	// vault; see StorageConfig.
	Storage StorageConfig
	// Stream configures live streaming: WHIP and RTP ingest, WHEP
	// playback, relaying over the mesh. The zero value streams with the
	// media on DefaultStreamICEAddr; see StreamConfig.
	Stream StreamConfig
	// VoIP configures community telephony: SIP for phones and between
	// boxes, extensions in the catalog, calls in the panel; see
	// VoIPConfig.
	VoIP VoIPConfig

	// SetupCodeFile is where a box whose first-boot wizard has not run
	// writes the wizard's one-time setup code (it is logged too); on a
	// box, a file on the boot partition. Zero means SetupCodeFile in
	// StateDir. The file is removed when the wizard is done.
	SetupCodeFile string

	// SetupCodeConsole, if set, is a device the box's name, addresses and
	// setup code are also written to on a first boot: "/dev/console" on a
	// box (its HDMI screen and serial port). Zero writes none.
	SetupCodeConsole string

	// AdminTokenFile, if set, names a file holding an API token (at least
	// 32 characters) that is accepted as an administrator's bearer token
	// even before the wizard ran: for automation and tests in host mode.
	// Zero means none; tokens are then created on the panel.
	AdminTokenFile string

	// ShutdownTimeout bounds the graceful shutdown once ctx is done; after it
	// the remaining connections are closed. Zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// Logger receives the daemon's events. Nil discards them.
	Logger *slog.Logger

	// Now is the clock for uptime and the identity's creation time. Nil
	// means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.Version == "" {
		c.Version = buildinfo.Version
	}
	if c.Board == "" {
		c.Board = buildinfo.Board
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Run runs the daemon until ctx is done: it opens (or creates) the node
// identity in cfg.StateDir, joins a community if cfg.Overlay asks it to, runs
// the overlay when the box is a member, serves DNS and HTTP, and on cancellation
// shuts everything down, the HTTP server within cfg.ShutdownTimeout. It
// returns nil after a shutdown requested through ctx, and an error if the
// state cannot be opened, the join token is invalid or refused, the overlay
// cannot run (no TUN device, no CAP_NET_ADMIN, port in use), the DNS or HTTP
// server cannot listen or serve. After a backup was restored on the panel
// it shuts down and returns ErrRestart: the restore is applied when Run
// starts again (with a new Listener, if one was set). Run returns after the server and the overlay have
// stopped; the only goroutines that may outlive it briefly are net/http's
// own for connections cut after a shutdown timeout.
func Run(ctx context.Context, cfg Config) (err error) {
	cfg = cfg.withDefaults()
	// The Logs page shows the recent records of every component.
	logs := newLogRing()
	logger := slog.New(logs.handler(cfg.Logger.Handler()))
	started := cfg.Now()
	if cfg.Listener != nil {
		defer func() {
			if cerr := cfg.Listener.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = errors.Join(err, fmt.Errorf("closing listener: %w", cerr))
			}
		}()
	}

	if cfg.HTTPSListener != nil {
		defer func() {
			if cerr := cfg.HTTPSListener.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = errors.Join(err, fmt.Errorf("closing https listener: %w", cerr))
			}
		}()
	}

	if ok, err := applyFactoryReset(cfg.StateDir); err != nil {
		return err
	} else if ok {
		logger.Warn("factory reset: the state was erased")
	}
	if ok, err := applyRestore(cfg.StateDir); err != nil {
		return err
	} else if ok {
		logger.Info("applied a restored backup")
	}
	restart := make(chan struct{}, 1)

	node, err := state.Open(ctx, state.Config{Dir: cfg.StateDir, Name: cfg.Name, Logger: logger, Now: cfg.Now})
	if err != nil {
		return fmt.Errorf("opening node state: %w", err)
	}
	logger.Info("starting", "version", cfg.Version, "board", cfg.Board,
		"node_id", node.ID(), "node_name", node.Name, "state_dir", cfg.StateDir)

	ov, err := openOverlay(cfg.Overlay, cfg.StateDir, node, logger, cfg.Now)
	if err != nil {
		return err
	}
	gw := openGateway(cfg.Gateway, node.ID(), node.Name, cfg.StateDir, ov, cmp.Or(cfg.DNS.Domain, dnsproxy.DefaultDomain), logger, cfg.Now)
	if n, err := loadNetwork(cfg.StateDir); err != nil {
		logger.Warn("network settings unusable, using the flags", "error", err)
	} else if len(n.DNSUpstreams) > 0 {
		cfg.DNS.Upstreams = n.DNSUpstreams
	}
	dns, err := openDNS(cfg.DNS, func() []netip.Prefix {
		return append(ov.communityPrefixes(), localPrefixes()...)
	}, logger, ov.changed.Wait, ov, ov.catalog, gw)
	if err != nil {
		return err
	}
	mdnsSvc := openMDNS(cfg.MDNS, node.Name, node.ID(), ov.cfg.InterfaceName, ov.catalog, ov.memberEndpoints,
		ov.changed.Wait, logger)
	st, err := openStorage(cfg.Storage, cfg.StateDir, node, ov, logger, cfg.Now)
	if err != nil {
		return err
	}
	ca, err := openCertAuthority(certAuthorityConfig{stateDir: cfg.StateDir, node: node.Name,
		domain: cmp.Or(cfg.DNS.Domain, dnsproxy.DefaultDomain), addrs: tlsAddrs, now: cfg.Now, logger: logger})
	if err != nil {
		return err
	}
	upd := openUpdate(cfg.Update, cfg.StateDir, node.ID(), node.Name, cfg.Board, cfg.Version, ov, logger)
	var replaceWith atomic.Pointer[string] // a router's update restarts into this binary
	upd.replaceWith = func(path string) {
		replaceWith.Store(&path)
		select {
		case restart <- struct{}{}:
		default:
		}
	}
	ov.update = upd.handler()
	hs := newHTTPS(ca, cfg.HTTPSAddr, cfg.HTTPSListener, cfg.ShutdownTimeout, logger)
	streams := openStream(cfg.Stream, node.ID(), cfg.StateDir, ov, logger)
	defer streams.close()
	components := map[string]StatusFunc{"state": stateStatus(cfg.StateDir), "overlay": ov.status, "dns": dns.status,
		"catalog": ov.catalog.status, "mdns": mdnsSvc.status, "gateway": gw.status,
		"https": hs.status, "update": upd.status, "storage": st.status, "stream": streams.status}
	for name, f := range cfg.Components {
		if _, ok := components[name]; ok {
			return fmt.Errorf("registering component %q: name already in use", name)
		}
		components[name] = f
	}
	auth, err := newAuth(authConfig{stateDir: cfg.StateDir, adminTokenFile: cfg.AdminTokenFile,
		setupCodeFile: cfg.SetupCodeFile, console: cfg.SetupCodeConsole, node: node.Name, now: cfg.Now, logger: logger})
	if err != nil {
		return err
	}
	vo := openVoIPOf(cfg, node, ov, auth, logger)
	if _, ok := components["voip"]; ok {
		return fmt.Errorf("registering component %q: name already in use", "voip")
	}
	components["voip"] = vo.status
	h, err := newHandler(handlerConfig{
		version:    cfg.Version,
		board:      cfg.Board,
		node:       node,
		started:    started,
		now:        cfg.Now,
		components: components,
		overlay:    ov,
		dns:        dns,
		catalog:    ov.catalog,
		mdns:       mdnsSvc,
		gateway:    gw,
		update:     upd,
		storage:    st,
		streams:    streams,
		voip:       vo,
		auth:       auth,
		https:      hs,
		logs:       logs,
		restart: func() {
			select {
			case restart <- struct{}{}:
			default:
			}
		},
		stateDir: cfg.StateDir,
		logger:   logger,
	})
	if err != nil {
		return err
	}
	hs.handler = h

	ln := cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listening for http: %w", err)
		}
	}
	srv := newHTTPServer(h, logger)
	logger.Info("http listening", "addr", ln.Addr().String())
	upd.panelAddr = ln.Addr().String()
	ov.catalog.setBuiltin(func() []services.Service {
		return slices.Concat(builtinServices(node.Name, ln.Addr(), dns), gw.builtinServices(), upd.builtinServices(ov.cfg.ListenPort), st.builtinServices(node.Name, ln.Addr()), streams.builtinServices(), vo.builtinServices())
	})
	streams.setHTTPAddr(ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	// The background components: each returns nil by itself only when it
	// has nothing to do (the overlay of a non-member, a disabled DNS); the
	// daemon serves on then.
	background := []func(context.Context) error{ov.run, dns.run, mdnsSvc.run, gw.run, upd.run, st.run, streams.run, vo.run}
	background = append(background, hs.run)
	done := make(chan error, len(background))
	for _, run := range background {
		go func() { done <- run(bctx) }()
	}
	running := len(background)

	// Wait for a stop request or a failure.
	var serveErr, bgErr error
	var restarting bool
	for waiting := true; waiting; {
		select {
		case <-restart:
			restarting, waiting = true, false
		case err := <-served:
			serveErr, waiting = fmt.Errorf("serving http: %w", err), false
		case err := <-done:
			running--
			bgErr, waiting = err, err == nil
		case <-ctx.Done():
			waiting = false
		}
	}
	reason := context.Cause(ctx)
	if restarting {
		reason = ErrRestart
	}
	if err := cmp.Or(serveErr, bgErr); err != nil {
		reason = err
	}
	logger.Info("shutting down", "reason", reason.Error())
	bcancel()
	if serveErr == nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			// The stop was requested and happens anyway; the open
			// connections are cut instead of drained.
			logger.Warn("http shutdown incomplete, closing connections", "error", err)
			srv.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("serving http: %w", err)
		}
	} else {
		// Serve failed: cut the connections it had accepted.
		srv.Close()
	}
	bgErrs := []error{bgErr}
	for ; running > 0; running-- {
		bgErrs = append(bgErrs, <-done)
	}
	bgJoined := errors.Join(bgErrs...)
	if err := errors.Join(bgJoined, serveErr); err != nil {
		return err
	}
	logger.Info("stopped")
	if p := replaceWith.Load(); restarting && p != nil {
		return &ReplaceError{Path: *p}
	}
	if restarting {
		return ErrRestart
	}
	return nil
}

// newHTTPServer returns the server of the panel, API or roster service:
// net/http's, or in the router profile the smaller one of
// internal/plainhttp, with the daemon's timeouts and limits.
func newHTTPServer(h http.Handler, logger *slog.Logger) plainhttp.HTTPServer {
	return plainhttp.NewServer(plainhttp.ServerConfig{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newErrorLog(logger),
	})
}

// newErrorLog adapts http.Server's error log (TLS handshake failures,
// accept errors, handler panics) to slog with a constant message.
func newErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ l *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	w.l.Warn("http server error", "error", strings.TrimSpace(string(p)))
	return len(p), nil
}
