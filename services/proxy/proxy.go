package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/internal/plainhttp"
)

// Proxy is a gateway: an HTTP forward proxy and a SOCKS5 server sharing
// one set of access rules, accounts and limits. Create it with New and
// serve with Run; Stats and WriteMetrics may be called at any time, from
// any goroutine.
type Proxy struct {
	// Immutable after New.
	cfg       Config
	log       *slog.Logger
	pol       policy
	dialer    *net.Dialer
	transport roundTripper // https:// absolute URIs; nil in the router profile
	upstream  *upstream    // http:// ones
	creds     *credCache
	limited   bool       // any of the rate, quota limits is set
	total     [2]*bucket // overall cap by direction; nil without TotalRate
	federated map[string]bool

	// Counters, updated atomically.
	connsTotal    atomic.Uint64
	connsRefused  atomic.Uint64 // source not allowed, or MaxConns reached
	connsActive   atomic.Int64
	requests      atomic.Uint64 // HTTP requests forwarded (not CONNECT)
	tunnels       atomic.Uint64 // CONNECT and SOCKS5 tunnels opened
	tunnelsActive atomic.Int64
	authFailures  atomic.Uint64
	denied        atomic.Uint64 // 403 and SOCKS5 "not allowed"
	limitRefused  atomic.Uint64 // connection limit reached
	quotaExceeded atomic.Uint64
	badRequests   atomic.Uint64
	upstreamErrs  atomic.Uint64 // 502/504 and SOCKS5 dial failures
	bytes         [2]atomic.Uint64

	// usersMu guards users, keyed by box + "\x00" + name.
	usersMu sync.Mutex
	users   map[string]*user

	// Run's state. wg counts every goroutine Run starts, directly or from
	// connections (net/http's per-connection goroutines too, through
	// ConnState, and every handler).
	ran   atomic.Bool
	ready chan struct{}
	done  chan struct{} // closed when Run starts shutting down
	// runCtx is Run's context (the proxy's lifetime), set before serving.
	runCtx     context.Context
	httpAddrs  []net.Addr // written before ready is closed
	socksAddrs []net.Addr // written before ready is closed
	wg         sync.WaitGroup

	// connsMu guards conns, every open client connection, closed by Run
	// when it stops (hijacked tunnels are not net/http's any more).
	connsMu sync.Mutex
	conns   map[*clientConn]struct{}
}

// roundTripper forwards https:// absolute URIs (an *http.Transport).
type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// New checks cfg and returns a Proxy. It does not listen yet: Run does.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		pol:     newPolicy(cfg),
		creds:   newCredCache(cfg.CredentialCacheSize),
		limited: cfg.UserRate > 0 || cfg.UserDailyQuota > 0 || cfg.TotalRate > 0,
		users:   make(map[string]*user),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		conns:   make(map[*clientConn]struct{}),
	}
	for d := range p.total {
		p.total[d] = newBucket(cfg.TotalRate, max(cfg.TotalRate/8, 64<<10), now)
	}
	if cfg.Federation == FederateList {
		p.federated = make(map[string]bool)
		for _, b := range cfg.FederatedBoxes {
			if !validNodeID(b) {
				return nil, fmt.Errorf("Config.FederatedBoxes: %q is not a node ID", b)
			}
			p.federated[b] = true
		}
	}
	p.dialer = &net.Dialer{
		Timeout:        cfg.DialTimeout,
		KeepAlive:      30 * time.Second,
		Resolver:       cfg.Resolver,
		ControlContext: p.pol.control,
	}
	p.transport = newHTTPSTransport(p.dialer, cfg)
	p.upstream = newUpstream(p)
	return p, nil
}

// Ready returns a channel that is closed once Run listens on every socket.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addrs returns the addresses served by the HTTP proxy and by SOCKS5. It
// returns nils before Ready is closed.
func (p *Proxy) Addrs() (httpAddrs, socksAddrs []net.Addr) {
	select {
	case <-p.ready:
		return p.httpAddrs, p.socksAddrs
	default:
		return nil, nil
	}
}

// Run serves until ctx is done, then closes its listeners and every client
// connection and returns after every goroutine it started has stopped. It
// returns nil when ctx ended it, and an error when it could not listen.
// Run may be called once.
func (p *Proxy) Run(ctx context.Context) (err error) {
	if !p.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	httpLns, socksLns := p.cfg.HTTPListeners, p.cfg.SOCKSListeners
	defer func() {
		var errs []error
		for _, ln := range slices.Concat(httpLns, socksLns) {
			if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("closing listener: %w", cerr))
			}
		}
		err = errors.Join(append([]error{err}, errs...)...)
	}()
	if len(httpLns) == 0 {
		if httpLns, err = listen(ctx, p.cfg.HTTPAddrs, httpLns); err != nil {
			return err
		}
	}
	if len(socksLns) == 0 {
		if socksLns, err = listen(ctx, p.cfg.SOCKSAddrs, socksLns); err != nil {
			return err
		}
	}

	p.runCtx = ctx
	// net/http's server, or internal/plainhttp's in the router profile
	// (without crypto/tls).
	srv := plainhttp.NewServer(plainhttp.ServerConfig{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: p.cfg.HeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		ErrorLog:          log.New(discard{}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				p.wg.Add(1)
			case http.StateClosed, http.StateHijacked:
				p.wg.Done()
			}
		},
	})
	for _, ln := range httpLns {
		p.httpAddrs = append(p.httpAddrs, ln.Addr())
		gl := &guardedListener{Listener: ln, p: p}
		p.wg.Go(func() {
			if err := srv.Serve(gl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("http proxy listener failed", "addr", ln.Addr().String(), "error", err)
			}
		})
	}
	for _, ln := range socksLns {
		p.socksAddrs = append(p.socksAddrs, ln.Addr())
		gl := &guardedListener{Listener: ln, p: p}
		p.wg.Go(func() { p.serveSOCKS(gl) })
	}
	p.wg.Go(func() { p.housekeeping(ctx) })
	close(p.ready)
	for _, a := range p.httpAddrs {
		p.log.Info("proxy listening", "protocol", "http", "addr", a.String())
	}
	for _, a := range p.socksAddrs {
		p.log.Info("proxy listening", "protocol", "socks5", "addr", a.String())
	}

	<-ctx.Done()
	close(p.done)
	srv.Close() // closes the HTTP listeners and net/http's connections
	for _, ln := range socksLns {
		ln.Close()
	}
	p.connsMu.Lock()
	for c := range p.conns {
		c.Conn.Close()
	}
	p.connsMu.Unlock()
	p.wg.Wait()
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
	p.upstream.close()
	p.log.Info("proxy stopped")
	return nil
}

// housekeeping forgets idle users now and then.
func (p *Proxy) housekeeping(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.pruneUsers()
		}
	}
}

// listen opens a TCP listener on each address and appends it to lns.
func listen(ctx context.Context, addrs []string, lns []net.Listener) ([]net.Listener, error) {
	var lc net.ListenConfig
	for _, a := range addrs {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

type connKey struct{}

// guardedListener accepts only clients from allowed sources, at most
// MaxConns at once, and wraps each in a clientConn.
type guardedListener struct {
	net.Listener
	p *Proxy
}

func (l *guardedListener) Accept() (net.Conn, error) {
	p := l.p
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !p.pol.sourceAllowed(c.RemoteAddr()) || p.connsActive.Load() >= int64(p.cfg.MaxConns) {
			p.connsRefused.Add(1)
			c.Close()
			continue
		}
		cc := &clientConn{Conn: c, p: p, done: make(chan struct{})}
		cc.tcp, _ = c.(*net.TCPConn)
		p.connsMu.Lock()
		select {
		case <-p.done:
			p.connsMu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		default:
		}
		p.conns[cc] = struct{}{}
		p.connsMu.Unlock()
		p.connsTotal.Add(1)
		p.connsActive.Add(1)
		return cc, nil
	}
}

// clientConn is a client's connection: it counts and limits the bytes it
// carries for the user it is bound to. Its methods other than Read and
// Write are safe for concurrent use.
type clientConn struct {
	net.Conn
	tcp  *net.TCPConn // Conn, when it is one (for splicing tunnels)
	p    *Proxy
	done chan struct{} // closed by Close

	// user is set by bind; nil until the first authenticated request.
	user atomic.Pointer[user]
	// authHdr and authUser remember the last Proxy-Authorization that
	// verified on this connection (touched by its serving goroutine only).
	authHdr  string
	authUser *user
	authExp  time.Time

	closeOnce sync.Once
}

func (c *clientConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if u := c.user.Load(); u != nil && n > 0 {
		d, qerr := c.p.account(u, up, n)
		if qerr != nil {
			c.Conn.Close()
			return n, qerr
		}
		pause(d, c.done)
	}
	return n, err
}

func (c *clientConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if u := c.user.Load(); u != nil && n > 0 {
		d, qerr := c.p.account(u, down, n)
		if qerr != nil {
			c.Conn.Close()
			return n, qerr
		}
		pause(d, c.done)
	}
	return n, err
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		close(c.done)
		c.p.connsMu.Lock()
		delete(c.p.conns, c)
		c.p.connsMu.Unlock()
		c.p.connsActive.Add(-1)
		if u := c.user.Swap(nil); u != nil {
			u.conns.Add(-1)
			u.lastSeen.Store(c.p.cfg.Now().Unix())
		}
	})
	return err
}

// bind makes u the user of c, within u's connection limit.
func (c *clientConn) bind(u *user) error {
	if c.user.Load() == u {
		return nil
	}
	if n := c.p.cfg.UserMaxConns; n > 0 {
		if u.conns.Add(1) > int32(n) {
			u.conns.Add(-1)
			c.p.limitRefused.Add(1)
			return errConnLimit
		}
	} else {
		u.conns.Add(1)
	}
	u.lastSeen.Store(c.p.cfg.Now().Unix())
	if old := c.user.Swap(u); old != nil {
		old.conns.Add(-1)
	}
	select {
	case <-c.done: // closed meanwhile: Close has released its user
		if c.user.CompareAndSwap(u, nil) {
			u.conns.Add(-1)
		}
	default:
	}
	return nil
}

// authenticate checks the user name and credential token a client gave and
// returns its user. Without Config.Keys everybody is the anonymous user.
func (p *Proxy) authenticate(name, token string) (*user, error) {
	if p.cfg.Keys == nil {
		return p.userFor("", ""), nil
	}
	key := cacheKey(name, token)
	c, ok := p.creds.get(key)
	now := p.cfg.Now()
	if ok {
		if !now.Before(c.Expires) {
			return nil, ErrExpired
		}
		if p.cfg.KeysAuthoritative {
			if _, known := p.cfg.Keys(c.Box); !known {
				return nil, fmt.Errorf("box %s is no longer a member: %w", c.Box, ErrBadCredential)
			}
		}
	} else {
		var err error
		if c, err = VerifyCredential(token, p.cfg.Keys, now); err != nil {
			return nil, err
		}
		if c.User != name {
			return nil, fmt.Errorf("user name %q differs from the credential's: %w", name, ErrBadCredential)
		}
		p.creds.put(key, c)
	}
	if err := p.federates(c); err != nil {
		return nil, err
	}
	return p.userFor(c.User, c.Box), nil
}

// federates applies the federation policy and the credential's own list of
// gateways.
func (p *Proxy) federates(c Credential) error {
	if len(c.Gateways) > 0 && !slices.Contains(c.Gateways, p.cfg.NodeID) {
		return fmt.Errorf("credential not valid for this gateway: %w", ErrNotFederated)
	}
	switch p.cfg.Federation {
	case FederateOwn:
		if c.Box != p.cfg.NodeID {
			return fmt.Errorf("users of box %s are not served: %w", c.Box, ErrNotFederated)
		}
	case FederateList:
		if c.Box != p.cfg.NodeID && !p.federated[c.Box] {
			return fmt.Errorf("users of box %s are not served: %w", c.Box, ErrNotFederated)
		}
	}
	return nil
}

// logAccess reports a finished request or tunnel to Config.AccessLog.
func (p *Proxy) logAccess(u *user, method, host, url string, status int, upBytes, downBytes int64) {
	if p.cfg.AccessLog == nil {
		return
	}
	e := AccessEntry{Time: p.cfg.Now(), Method: method, Host: host, URL: url, Status: status, BytesUp: upBytes, BytesDown: downBytes}
	if u != nil {
		e.User, e.Box = u.name, u.box
	}
	p.cfg.AccessLog(e)
}
