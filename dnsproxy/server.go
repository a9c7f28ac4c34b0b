package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the box's DNS server. Create it with New, serve with Run, and
// change the community zone at any time with SetZone. Its methods are safe
// for concurrent use.
type Server struct {
	// Immutable after New.
	cfg     Config
	log     *slog.Logger
	epoch   time.Time
	udpSize uint16
	raBit   uint16   // flagRA when there are upstreams to recurse with
	cache   *cache   // nil when Config.CacheSize is negative
	limiter *limiter // nil when Config.RateLimit is negative
	shared  *counters

	// zone is the compiled community zone. Lookups load it without locks;
	// SetZone swaps in a new one. zoneMu serialises SetZone.
	zone   atomic.Pointer[zoneData]
	zoneMu sync.Mutex
	serial uint32 // guarded by zoneMu

	// allowed is Config.AllowedNets until SetAllowedNets replaces it.
	allowed atomic.Pointer[[]netip.Prefix]

	lastGood   atomic.Int32 // index of the upstream that answered last
	flights    flights
	pending    chan struct{} // one token per UDP query waiting for upstreams
	prefetches chan struct{} // one token per prefetch running

	// countersMu guards counterSets, which Run extends with one set per UDP
	// worker.
	countersMu  sync.Mutex
	counterSets []*counters

	// Run's state. wg counts every goroutine Run starts, directly or from
	// the hot path (upstream queries, prefetches, TCP connections).
	ran   atomic.Bool
	ready chan struct{}
	addrs []net.Addr // written before ready is closed
	wg    sync.WaitGroup

	// tcpMu guards tcpConns, the open TCP connections, closed by Run when it
	// stops.
	tcpMu    sync.Mutex
	tcpConns map[net.Conn]struct{}
	tcpSlots chan struct{}
}

// New checks cfg and returns a Server that serves cfg.Zone until SetZone
// is called. It does not listen yet: Run does.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		epoch:      cfg.Now(),
		udpSize:    uint16(cfg.MaxUDPSize),
		shared:     new(counters),
		pending:    make(chan struct{}, cfg.MaxPending),
		prefetches: make(chan struct{}, cfg.MaxPrefetches),
		ready:      make(chan struct{}),
		tcpConns:   make(map[net.Conn]struct{}),
		tcpSlots:   make(chan struct{}, cfg.MaxTCPConns),
	}
	s.flights.m = make(map[string]*flight)
	s.counterSets = []*counters{s.shared}
	if len(cfg.Upstreams) > 0 {
		s.raBit = flagRA
	}
	if cfg.CacheSize > 0 {
		s.cache = newCache(cfg.CacheSize)
	}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	// SOA serials (RFC 1982) grow across restarts when they start from the
	// clock.
	s.serial = uint32(max(1, s.epoch.Unix()))
	s.allowed.Store(&cfg.AllowedNets)
	if err := s.SetZone(cfg.Zone); err != nil {
		return nil, fmt.Errorf("Config.Zone: %w", err)
	}
	return s, nil
}

// SetZone replaces the community zone's content. It checks z completely
// and packs every answer before it swaps the zone in, atomically: queries
// see the old zone or the new one, never a mix. On error the served zone
// does not change. Each call increments the SOA serial.
func (s *Server) SetZone(z Zone) error {
	s.zoneMu.Lock()
	defer s.zoneMu.Unlock()
	zd, err := compileZone(s.cfg.Domain, z, s.serial+1)
	if err != nil {
		return err
	}
	s.serial++
	s.zone.Store(zd)
	return nil
}

// SetAllowedNets replaces Config.AllowedNets, the client networks that get
// answers, e.g. when the box's addresses change; empty means
// DefaultAllowedNets. The slice must not be modified afterwards. Queries
// see the old list or the new one.
func (s *Server) SetAllowedNets(nets []netip.Prefix) {
	if len(nets) == 0 {
		nets = DefaultAllowedNets
	}
	s.allowed.Store(&nets)
}

// Domain returns the community zone's name, absolute and in lower case.
func (s *Server) Domain() string { return s.cfg.Domain }

// nanotime is the clock for TTLs and rate limits: nanoseconds since New,
// monotonic when Config.Now is time.Now, so that a box whose clock jumps
// at its first NTP sync keeps its cache.
func (s *Server) nanotime() int64 { return int64(s.cfg.Now().Sub(s.epoch)) }

// Ready returns a channel that is closed once Run listens on every socket.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the addresses served, the UDP sockets' first, then the TCP
// listeners'. It returns nil before Ready is closed.
func (s *Server) Addrs() []net.Addr {
	select {
	case <-s.ready:
		return s.addrs
	default:
		return nil
	}
}

// Run serves DNS until ctx is done, then closes its sockets and returns
// after every goroutine it started has stopped. It returns nil when ctx
// ended it, and an error when it could not listen or a socket failed. Run
// may be called once.
func (s *Server) Run(ctx context.Context) (err error) {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	pcs, lns := s.cfg.PacketConns, s.cfg.Listeners
	defer func() {
		var errs []error
		for _, pc := range pcs {
			if cerr := pc.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("closing udp socket: %w", cerr))
			}
		}
		for _, ln := range lns {
			if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("closing tcp listener: %w", cerr))
			}
		}
		err = errors.Join(append([]error{err}, errs...)...)
	}()
	if len(pcs) == 0 && len(lns) == 0 {
		if pcs, lns, err = listen(ctx, s.cfg.Listen); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fatalOnce sync.Once
	var fatal error
	fail := func(err error) {
		fatalOnce.Do(func() { fatal = err })
		cancel()
	}

	for _, pc := range pcs {
		s.addrs = append(s.addrs, pc.LocalAddr())
		for range s.cfg.Workers {
			c := new(counters)
			s.countersMu.Lock()
			s.counterSets = append(s.counterSets, c)
			s.countersMu.Unlock()
			s.wg.Go(func() {
				if err := s.serveUDP(ctx, pc, c); err != nil {
					fail(err)
				}
			})
		}
	}
	for _, ln := range lns {
		s.addrs = append(s.addrs, ln.Addr())
		s.wg.Go(func() { s.serveTCP(ctx, ln) })
	}
	close(s.ready)
	for _, a := range s.addrs {
		s.log.Info("dns listening", "network", a.Network(), "addr", a.String(), "zone", s.cfg.Domain)
	}

	<-ctx.Done()
	for _, pc := range pcs {
		pc.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	s.tcpMu.Lock()
	for c := range s.tcpConns {
		c.Close()
	}
	s.tcpMu.Unlock()
	s.wg.Wait()
	if fatal != nil {
		return fatal
	}
	s.log.Info("dns stopped")
	return nil
}

// listenPair opens a UDP socket and a TCP listener on one address. With
// port 0 the TCP listener takes the port the UDP socket got; when another
// program holds that TCP port, it tries again with another port, a few
// times.
func listenPair(ctx context.Context, lc *net.ListenConfig, a string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(a)
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			return nil, nil, fmt.Errorf("listening on udp %s: %w", a, err)
		}
		ln, err := lc.Listen(ctx, "tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try == 8 {
			return nil, nil, fmt.Errorf("listening on tcp %s: %w", pc.LocalAddr(), err)
		}
	}
}

// listen opens a UDP socket and a TCP listener on each address. With port
// 0 the TCP listener takes the port the UDP socket got.
func listen(ctx context.Context, addrs []string) (pcs []net.PacketConn, lns []net.Listener, err error) {
	var lc net.ListenConfig
	defer func() {
		if err != nil {
			for _, pc := range pcs {
				pc.Close()
			}
			for _, ln := range lns {
				ln.Close()
			}
			pcs, lns = nil, nil
		}
	}()
	for _, a := range addrs {
		pc, ln, err := listenPair(ctx, &lc, a)
		if err != nil {
			return pcs, lns, err
		}
		pcs = append(pcs, pc)
		lns = append(lns, ln)
	}
	return pcs, lns, nil
}

// udpBufSize is the read buffer of a UDP worker: larger than any query a
// client with a sane EDNS payload sends (longer packets are cut and then
// fail to parse).
const udpBufSize = 4096

// serveUDP reads queries from pc and answers them until pc is closed. Hits
// and zone answers are sent from this goroutine; queries for the upstreams
// get a goroutine each, at most MaxPending at once.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, c *counters) error {
	uc, _ := pc.(*net.UDPConn)
	in := make([]byte, udpBufSize)
	sc := newScratch(udpBufSize)
	var r request
	for {
		var (
			n    int
			ap   netip.AddrPort
			addr net.Addr
			err  error
		)
		if uc != nil {
			n, ap, err = uc.ReadFromUDPAddrPort(in)
		} else {
			n, addr, err = pc.ReadFrom(in)
			ap = addrPort(addr)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("reading udp on %s: %w", pc.LocalAddr(), err)
		}
		r = request{p: in[:n], src: ap.Addr().Unmap()}
		resp, up := s.respond(ctx, c, sc, &r, s.nanotime())
		if up {
			s.dispatch(ctx, c, pc, uc, ap, addr, &r)
			continue
		}
		if resp == nil {
			continue
		}
		if uc != nil {
			_, err = uc.WriteToUDPAddrPort(resp, ap)
		} else {
			_, err = pc.WriteTo(resp, addr)
		}
		if err != nil {
			c.dropped.Add(1)
		}
	}
}

// dispatch answers r from the upstreams in a new goroutine, if fewer than
// MaxPending are waiting; else it drops r.
func (s *Server) dispatch(ctx context.Context, c *counters, pc net.PacketConn, uc *net.UDPConn, ap netip.AddrPort, addr net.Addr, r *request) {
	select {
	case s.pending <- struct{}{}:
	default:
		c.dropped.Add(1)
		return
	}
	req := request{p: append([]byte(nil), r.p...), q: r.q, src: r.src}
	s.wg.Go(func() {
		defer func() { <-s.pending }()
		resp := s.respondUpstream(ctx, s.shared, &scratch{}, &req)
		if resp == nil {
			return
		}
		var err error
		if uc != nil {
			_, err = uc.WriteToUDPAddrPort(resp, ap)
		} else {
			_, err = pc.WriteTo(resp, addr)
		}
		if err != nil && ctx.Err() == nil {
			s.shared.dropped.Add(1)
		}
	})
}

// addrPort converts a PacketConn's source address.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// serveTCP accepts connections until ln is closed (RFC 7766). Connections
// beyond MaxTCPConns are closed at once.
func (s *Server) serveTCP(ctx context.Context, ln net.Listener) {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("tcp accept failed", "addr", ln.Addr().String(), "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		select {
		case s.tcpSlots <- struct{}{}:
		default:
			s.shared.dropped.Add(1)
			conn.Close()
			continue
		}
		s.tcpMu.Lock()
		if ctx.Err() != nil {
			s.tcpMu.Unlock()
			conn.Close()
			<-s.tcpSlots
			return
		}
		s.tcpConns[conn] = struct{}{}
		s.tcpMu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.tcpMu.Lock()
				delete(s.tcpConns, conn)
				s.tcpMu.Unlock()
				conn.Close()
				<-s.tcpSlots
			}()
			s.serveTCPConn(ctx, conn)
		})
	}
}

// serveTCPConn answers the queries on one connection, in order (RFC 7766
// §6.2.1.1 allows it), until the client closes it, it is idle for
// TCPIdleTimeout (RFC 7766 §6.2.3), or it sends something that is not a
// query.
func (s *Server) serveTCPConn(ctx context.Context, conn net.Conn) {
	c := s.shared
	sc := newScratch(512)
	r := request{tcp: true, src: addrPort(conn.RemoteAddr()).Addr().Unmap()}
	var in, out []byte
	var l [2]byte
	for {
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if cap(in) < n {
			in = make([]byte, n)
		}
		in = in[:n]
		if _, err := io.ReadFull(conn, in); err != nil {
			return
		}
		r.p = in
		resp, up := s.respond(ctx, c, sc, &r, s.nanotime())
		if up {
			resp = s.respondUpstream(ctx, c, sc, &r)
		}
		if r.malformed {
			return // not a query: close the connection
		}
		if resp == nil {
			continue
		}
		out = binary.BigEndian.AppendUint16(out[:0], uint16(len(resp)))
		out = append(out, resp...)
		conn.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}
