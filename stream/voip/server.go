package voip

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Defaults of Config.
const (
	DefaultAddr         = ":5060"
	DefaultDomain       = "cloudbox"
	DefaultMediaTimeout = 60 * time.Second
	// DefaultAuthFailures is how many failed authentications a source
	// address may have per minute before it is blocked for a minute.
	DefaultAuthFailures = 10
)

const (
	maxMessage   = 65535
	maxTCPConns  = 1024
	tcpIdle      = 10 * time.Minute
	writeTimeout = 2 * time.Second
	defaultTTL   = 3600 // registration expiry, seconds
	minTTL       = 30
	// branchMagic starts our Via branches (RFC 3261 §8.1.1.7 cookie).
	branchMagic = "z9hG4bK-cb"
)

// Config configures a Server. The zero value serves SIP on DefaultAddr with
// an open registrar (no authentication) and relays media on all addresses.
type Config struct {
	// Addr is the UDP and TCP address of SIP; zero means DefaultAddr. A
	// port of 0 picks a free one (see Server.Addr).
	Addr string
	// Domain is the SIP domain and digest realm; zero means DefaultDomain.
	// Requests are routed by the user part of the Request-URI whatever the
	// host, so phones may use the box's address as well.
	Domain string
	// Password returns the SIP password of a user (an extension); nil means
	// no authentication: any REGISTER is accepted (tests, benchmarks).
	Password func(user string) (string, bool)
	// Locate returns the SIP address of the box that has an extension not
	// registered here (from the community catalog); nil means only local
	// users are reachable.
	Locate func(user string) (netip.AddrPort, bool)
	// Trusted reports whether requests from an address come from another
	// box of the community, whose calls its own server authenticated;
	// their INVITEs are not challenged. nil means none. (The box's own
	// browser bridge is trusted by a token in its requests.) New calls from
	// anyone else must carry digest credentials (407) when Password is
	// set.
	Trusted func(netip.Addr) bool
	// Relay configures the media relay every call's RTP goes through.
	Relay RelayConfig
	// AuthFailures is how many failed authentications per minute a source
	// address may have before its requests are refused for a minute; zero
	// means DefaultAuthFailures.
	AuthFailures int
	// CallRate limits the calls (initial INVITEs) a source address may
	// start per second, with bursts of ten times as many; more get 503
	// with Retry-After. Zero means no limit. (Boxes forward all their
	// users' calls from one address: keep it generous.)
	CallRate float64
	// MediaTimeout ends an answered call whose media stopped (a phone or a
	// box that disappeared): both sides get a BYE. Zero means
	// DefaultMediaTimeout.
	MediaTimeout time.Duration
	// OnRecord is called (from the Server's goroutines) with the detail
	// record of every call that ends; nil drops them.
	OnRecord func(Record)
	// Logger receives the server's events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is a SIP registrar and transaction-stateless proxy (RFC 3261 §10,
// §16.11) with a media relay. Run serves; Close (or the end of Run's
// context) stops it. Safe for concurrent use.
type Server struct {
	// Immutable after New.
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	udp      *net.UDPConn
	tcp      *net.TCPListener
	bindIP   netip.Addr // unspecified when bound to all addresses
	port     uint16
	id       string // in our Via branches
	parser   *sip.Parser
	nonces   nonces
	fails    *failLimiter
	callRate *rateLimiter // nil: no call rate limit
	relay    *Relay
	reg      *registrar
	calls    *callTable
	local    *localAddrs

	stats serverStats

	// bridgeToken is the value of bridgeHeader in the requests of the
	// box's own browser bridge (Phones): its calls are not challenged.
	bridgeToken string

	// mu guards the following.
	mu     sync.Mutex
	conns  map[netip.AddrPort]*tcpConn
	closed bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
	done   chan struct{}
}

type serverStats struct {
	received, sent, malformed, authFailures, blocked atomic.Uint64
}

// peer is where a message came from or goes to.
type peer struct {
	ap  netip.AddrPort
	tcp *tcpConn // nil for UDP
}

// New binds the SIP ports and the relay.
func New(cfg Config) (*Server, error) {
	cfg.Addr = cmpOr(cfg.Addr, DefaultAddr)
	cfg.Domain = cmpOr(cfg.Domain, DefaultDomain)
	if cfg.AuthFailures <= 0 {
		cfg.AuthFailures = DefaultAuthFailures
	}
	if cfg.MediaTimeout <= 0 {
		cfg.MediaTimeout = DefaultMediaTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: orDiscard(cfg.Logger), now: cfg.Now, parser: sip.NewParser(),
		fails: newFailLimiter(cfg.AuthFailures, time.Minute), conns: make(map[netip.AddrPort]*tcpConn),
		reg: newRegistrar(), local: &localAddrs{}, done: make(chan struct{})}
	s.calls = newCallTable(s)
	if cfg.CallRate > 0 {
		s.callRate = newRateLimiter(cfg.CallRate, max(1, int(cfg.CallRate*10)))
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("reading random: %w", err)
	}
	s.id = hex.EncodeToString(id[:])
	var token [16]byte
	if _, err := rand.Read(token[:]); err != nil {
		return nil, fmt.Errorf("reading random: %w", err)
	}
	s.bridgeToken = hex.EncodeToString(token[:])
	if _, err := rand.Read(s.nonces.key[:]); err != nil {
		return nil, fmt.Errorf("reading random: %w", err)
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sip address %q: %w", cfg.Addr, err)
	}
	// A free UDP port may be taken for TCP: with port 0, try a few.
	for try := 0; ; try++ {
		if err := s.listen(ua); err == nil {
			break
		} else if ua.Port != 0 || try == 20 {
			return nil, err
		}
	}
	rc := cfg.Relay
	rc.Logger = cmpOrLogger(rc.Logger, cfg.Logger)
	s.relay, err = NewRelay(rc)
	if err != nil {
		s.udp.Close()
		s.tcp.Close()
		return nil, err
	}
	return s, nil
}

// listen binds UDP and TCP on the same port.
func (s *Server) listen(ua *net.UDPAddr) error {
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("listening on udp %s: %w", ua, err)
	}
	_ = udp.SetReadBuffer(4 << 20)
	bound := udp.LocalAddr().(*net.UDPAddr).AddrPort()
	ta := net.TCPAddrFromAddrPort(bound)
	tcp, err := net.ListenTCP("tcp", ta)
	if err != nil {
		udp.Close()
		return fmt.Errorf("listening on tcp %s: %w", ta, err)
	}
	s.udp, s.tcp = udp, tcp
	s.port = bound.Port()
	s.bindIP = bound.Addr().Unmap()
	s.local.fixed = s.bindIP
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func cmpOrLogger(a, b *slog.Logger) *slog.Logger {
	if a != nil {
		return a
	}
	return b
}

// Addr is the SIP address the server listens on (UDP and TCP).
func (s *Server) Addr() netip.AddrPort {
	return netip.AddrPortFrom(s.bindIP, s.port)
}

// Relay is the server's media relay.
func (s *Server) Relay() *Relay { return s.relay }

// Run serves until ctx ends or Close; it returns after every goroutine it
// started has stopped.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ErrClosed
	}
	s.cancel = cancel
	s.mu.Unlock()
	defer close(s.done)
	defer cancel()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.relay.Run(ctx); err != nil && !errors.Is(err, errEngineClosed) {
			s.log.Warn("media relay stopped", "err", err)
		}
	}()
	readers := 2
	for range readers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP()
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.serveTCP(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.janitor(ctx)
	}()
	<-ctx.Done()
	err := s.shutdown()
	s.wg.Wait()
	return err
}

// Close stops the server and waits for Run to return. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	cancel := s.cancel
	wasClosed := s.closed
	s.closed = true
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-s.done
		return nil
	}
	if wasClosed {
		return nil
	}
	return s.shutdown()
}

func (s *Server) shutdown() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[netip.AddrPort]*tcpConn{}
	s.mu.Unlock()
	for _, c := range conns {
		c.c.Close()
	}
	s.calls.closeAll()
	return errors.Join(s.udp.Close(), s.tcp.Close(), s.relay.Close())
}

func (s *Server) serveUDP() {
	buf := make([]byte, maxMessage)
	for {
		n, src, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.handle(buf[:n], peer{ap: unmapAP(src)})
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (s *Server) serveTCP(ctx context.Context) {
	for {
		c, err := s.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		tc, ok := s.addConn(c)
		if !ok {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.readTCP(tc)
		}()
	}
}

// tcpConn is one SIP connection (RFC 3261 §18.3), either way.
type tcpConn struct {
	c      *net.TCPConn
	remote netip.AddrPort
	wmu    sync.Mutex
}

func (t *tcpConn) write(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_ = t.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := t.c.Write(b)
	return err
}

func (s *Server) addConn(c *net.TCPConn) (*tcpConn, bool) {
	tc := &tcpConn{c: c, remote: unmapAP(c.RemoteAddr().(*net.TCPAddr).AddrPort())}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= maxTCPConns {
		return nil, false
	}
	if old := s.conns[tc.remote]; old != nil {
		old.c.Close()
	}
	s.conns[tc.remote] = tc
	return tc, true
}

func (s *Server) dropConn(tc *tcpConn) {
	s.mu.Lock()
	if s.conns[tc.remote] == tc {
		delete(s.conns, tc.remote)
	}
	s.mu.Unlock()
	tc.c.Close()
}

// readTCP frames messages by Content-Length (RFC 3261 §18.3) and handles
// them until the connection fails or idles out.
func (s *Server) readTCP(tc *tcpConn) {
	defer s.dropConn(tc)
	br := bufio.NewReaderSize(tc.c, 8192)
	var msg bytes.Buffer
	for {
		_ = tc.c.SetReadDeadline(time.Now().Add(tcpIdle))
		msg.Reset()
		clen := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				if errors.Is(err, bufio.ErrBufferFull) {
					s.stats.malformed.Add(1)
				}
				return
			}
			if msg.Len()+len(line) > maxMessage {
				s.stats.malformed.Add(1)
				return
			}
			if msg.Len() == 0 && (len(line) <= 2 && strings.TrimSpace(string(line)) == "") {
				continue // keep-alive CRLFs (RFC 5626 §4.4.1)
			}
			msg.Write(line)
			if len(line) <= 2 && strings.TrimSpace(string(line)) == "" {
				break
			}
			if name, val, ok := strings.Cut(string(line), ":"); ok {
				name = strings.ToLower(strings.TrimSpace(name))
				if name == "content-length" || name == "l" {
					if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && n >= 0 && n <= maxMessage {
						clen = n
					} else {
						s.stats.malformed.Add(1)
						return
					}
				}
			}
		}
		if clen < 0 {
			// RFC 3261 §18.3: mandatory on stream transports.
			s.replyUnparsable(msg.Bytes(), peer{ap: tc.remote, tcp: tc}, "Missing Content-Length")
			return
		}
		if msg.Len()+clen > maxMessage {
			s.stats.malformed.Add(1)
			return
		}
		start := msg.Len()
		msg.Grow(clen)
		if _, err := io.ReadFull(br, msg.AvailableBuffer()[:clen]); err != nil {
			return
		}
		msg.Write(msg.AvailableBuffer()[:clen])
		_ = start
		s.handle(msg.Bytes(), peer{ap: tc.remote, tcp: tc})
	}
}

// handle processes one message from src.
func (s *Server) handle(data []byte, src peer) {
	s.stats.received.Add(1)
	if len(bytes.TrimSpace(data)) == 0 {
		return // keep-alive
	}
	m, err := s.parser.ParseSIP(data)
	if err != nil {
		s.stats.malformed.Add(1)
		s.replyUnparsable(data, src, "Bad Request")
		return
	}
	switch m := m.(type) {
	case *sip.Request:
		s.handleRequest(m, src)
	case *sip.Response:
		s.handleResponse(m, src)
	}
}

// send writes a message to dst.
func (s *Server) send(m sip.Message, dst peer) {
	var b bytes.Buffer
	b.Grow(1024)
	m.StringWrite(&b)
	s.sendBytes(b.Bytes(), dst)
}

func (s *Server) sendBytes(b []byte, dst peer) {
	s.stats.sent.Add(1)
	if dst.tcp != nil {
		if err := dst.tcp.write(b); err != nil {
			s.log.Debug("sip tcp write failed", "to", dst.ap, "err", err)
			s.dropConn(dst.tcp)
		}
		return
	}
	if _, err := s.udp.WriteToUDPAddrPort(b, dst.ap); err != nil {
		s.log.Debug("sip udp write failed", "to", dst.ap, "err", err)
	}
}

// tcpTo returns the connection to ap, dialling one when there is none.
func (s *Server) tcpTo(ap netip.AddrPort) (*tcpConn, error) {
	s.mu.Lock()
	tc := s.conns[ap]
	s.mu.Unlock()
	if tc != nil {
		return tc, nil
	}
	d := net.Dialer{Timeout: writeTimeout}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("dialling %s: %w", ap, err)
	}
	tc, ok := s.addConn(c.(*net.TCPConn))
	if !ok {
		c.Close()
		return nil, ErrClosed
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readTCP(tc)
	}()
	return tc, nil
}

// replyUnparsable answers a request the parser rejected with a 400 built
// from its raw header lines (RFC 3261 §8.2.6: the response needs the
// request's Via, From, To, Call-ID and CSeq); other garbage is dropped.
func (s *Server) replyUnparsable(data []byte, src peer, reason string) {
	lines := strings.Split(string(data[:min(len(data), 8192)]), "\n")
	if len(lines) < 2 {
		return
	}
	first := strings.Fields(lines[0])
	if len(first) != 3 || strings.HasPrefix(first[0], "SIP/") || !strings.HasPrefix(first[2], "SIP/") {
		return // not a request line
	}
	var out strings.Builder
	out.WriteString("SIP/2.0 400 " + reason + "\r\n")
	have := map[string]bool{}
	for _, l := range lines[1:] {
		l = strings.TrimRight(l, "\r")
		if l == "" {
			break
		}
		name, _, ok := strings.Cut(l, ":")
		if !ok || len(l) > 1024 {
			continue
		}
		switch n := strings.ToLower(strings.TrimSpace(name)); n {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			out.WriteString(l + "\r\n")
			have[n[:1]] = true
		}
	}
	if !have["v"] {
		return // nowhere to answer
	}
	out.WriteString("Content-Length: 0\r\n\r\n")
	s.sendBytes([]byte(out.String()), src)
}

// localAddrs finds the box's address that faces a destination.
type localAddrs struct {
	fixed netip.Addr // the bind address; unspecified: look up

	mu      sync.Mutex
	byDst   map[netip.Addr]netip.Addr
	own     map[netip.Addr]bool
	ownTime time.Time
}

const localTTL = 30 * time.Second

// facing returns the local address packets to dst leave from.
func (l *localAddrs) facing(dst netip.Addr) netip.Addr {
	if l.fixed.IsValid() && !l.fixed.IsUnspecified() {
		return l.fixed
	}
	l.mu.Lock()
	a, ok := l.byDst[dst]
	l.mu.Unlock()
	if ok {
		return a
	}
	a = netip.IPv4Unspecified()
	if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9))); err == nil {
		a = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	l.mu.Lock()
	if l.byDst == nil || len(l.byDst) > 4096 {
		l.byDst = make(map[netip.Addr]netip.Addr)
	}
	l.byDst[dst] = a
	l.mu.Unlock()
	return a
}

// isOwn reports whether a is an address of this box.
func (l *localAddrs) isOwn(a netip.Addr) bool {
	a = a.Unmap()
	if l.fixed.IsValid() && !l.fixed.IsUnspecified() {
		return a == l.fixed
	}
	if a.IsLoopback() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.own[a] {
		return true
	}
	if time.Since(l.ownTime) < time.Second {
		return false
	}
	l.ownTime = time.Now()
	l.own = map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				l.own[p.Addr().Unmap()] = true
			}
		}
	}
	return l.own[a]
}

// trustedSource reports whether calls from ap pass without a challenge:
// another box of the community (Config.Trusted).
func (s *Server) trustedSource(ap netip.AddrPort) bool {
	return s.cfg.Trusted != nil && s.cfg.Trusted(ap.Addr().Unmap())
}

// bridgeHeader carries Server.bridgeToken in the browser bridge's requests.
const bridgeHeader = "X-Cloudbox-Bridge"

// fromBridge reports whether req comes from the box's own browser bridge,
// and removes the header so that it never leaves the box.
func (s *Server) fromBridge(req *sip.Request) bool {
	h := req.GetHeader(bridgeHeader)
	if h == nil {
		return false
	}
	req.RemoveHeader(bridgeHeader)
	return subtle.ConstantTimeCompare([]byte(h.Value()), []byte(s.bridgeToken)) == 1
}
