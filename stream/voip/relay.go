package voip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RelayConfig.
const (
	DefaultRelayPortMin = 10000
	DefaultRelayPortMax = 20000
)

// RelayConfig configures a media Relay. The zero value relays on all
// addresses, ports DefaultRelayPortMin to DefaultRelayPortMax.
type RelayConfig struct {
	// Addr is the address the relay's sockets bind to; zero means all
	// addresses (IPv4 and IPv6).
	Addr netip.Addr
	// PortMin and PortMax bound the UDP ports of the relay (inclusive);
	// zero means the defaults. Each anchored stream takes four ports
	// (RTP and RTCP on both sides).
	PortMin, PortMax uint16
	// Logger receives the relay's events; nil discards them.
	Logger *slog.Logger
}

// Relay anchors RTP: each side of a call sends its media to a port of the
// relay, and the relay forwards it out of the other side's port to the
// other endpoint (symmetric RTP: the endpoint's address is learned from
// the first packet it sends, RFC 4961). Packets are forwarded as they are,
// so any codec passes through. Safe for concurrent use; Run forwards,
// Close releases everything.
type Relay struct {
	// Immutable after NewRelay.
	cfg RelayConfig
	log *slog.Logger
	eng *relayEngine

	// Counters.
	packets atomic.Uint64 // forwarded
	bytes   atomic.Uint64
	dropped atomic.Uint64 // no destination known yet

	// mu guards the following.
	mu     sync.Mutex
	used   map[uint16]bool
	next   uint16
	closed bool
}

// NewRelay prepares a relay; Run forwards packets.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.PortMin == 0 {
		cfg.PortMin = DefaultRelayPortMin
	}
	if cfg.PortMax == 0 {
		cfg.PortMax = DefaultRelayPortMax
	}
	cfg.PortMin += cfg.PortMin % 2 // RTP on even ports (RFC 3550 §11)
	if cfg.PortMax < cfg.PortMin+3 {
		return nil, fmt.Errorf("relay port range %d-%d holds no stream", cfg.PortMin, cfg.PortMax)
	}
	r := &Relay{cfg: cfg, log: orDiscard(cfg.Logger), used: make(map[uint16]bool), next: cfg.PortMin}
	eng, err := newRelayEngine(r)
	if err != nil {
		return nil, fmt.Errorf("starting media relay: %w", err)
	}
	r.eng = eng
	return r, nil
}

// Run forwards packets until ctx ends or Close.
func (r *Relay) Run(ctx context.Context) error {
	return r.eng.run(ctx)
}

// Close stops forwarding and closes every port. Idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	return r.eng.close()
}

// RelayStats are a relay's counters.
type RelayStats struct {
	Packets, Bytes, Dropped uint64
	Ports                   int // in use
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	n := len(r.used)
	r.mu.Unlock()
	return RelayStats{Packets: r.packets.Load(), Bytes: r.bytes.Load(), Dropped: r.dropped.Load(), Ports: n}
}

// relayLeg is one relay socket: the endpoint on its side sends to it, and
// packets from the other side leave through it towards dest.
type relayLeg struct {
	port uint16
	side int           // sideA or sideB
	peer *relayLeg     // the leg of the other side (same stream, same kind)
	sess *MediaSession // for activity
	sock relaySocket   // platform part
	rx   atomic.Uint64 // packets received from this side's endpoint
	done atomic.Bool   // closed

	mu      sync.Mutex
	dest    netip.AddrPort // the endpoint on this side; invalid: unknown
	latched bool           // dest learned from a packet
	raw     rawAddr        // dest in socket form
}

func (l *relayLeg) setDest(ap netip.AddrPort, latched bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.latched && !latched {
		return // the address packets come from wins over the SDP's
	}
	l.dest, l.latched = ap, latched
	l.raw = toRaw(ap, l.sock.v6)
}

// MediaSession is the relay state of one call: for each media stream a
// pair of ports on side A (the caller's) and on side B (the callee's).
type MediaSession struct {
	r *Relay
	// last is the time of the last packet from each side (unix
	// nanoseconds; the session's creation before the first).
	last [2]atomic.Int64

	// mu guards the following.
	mu      sync.Mutex
	streams [][2][2]*relayLeg // [stream][side][rtp, rtcp]
	closed  bool
}

// Sides of a media session.
const (
	sideA = 0 // the caller's
	sideB = 1 // the callee's
)

// NewSession returns an empty media session; ports are taken by Ports.
func (r *Relay) NewSession() *MediaSession {
	s := &MediaSession{r: r}
	now := time.Now().UnixNano()
	s.last[sideA].Store(now)
	s.last[sideB].Store(now)
	return s
}

// Ports returns the RTP ports of side for n streams, allocating streams
// that do not exist yet.
func (s *MediaSession) Ports(side, n int) ([]uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	for len(s.streams) < n {
		st, err := s.r.allocStream(s)
		if err != nil {
			return nil, err
		}
		s.streams = append(s.streams, st)
	}
	ports := make([]uint16, n)
	for i := range n {
		ports[i] = s.streams[i][side][0].port
	}
	return ports, nil
}

// SetEndpoint sets where the endpoint of side receives stream i (RTCP on
// the next port), as its SDP says; a packet from the endpoint overrides it.
func (s *MediaSession) SetEndpoint(side, i int, rtp netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.streams) || !rtp.IsValid() || rtp.Port() == 0 {
		return
	}
	s.streams[i][side][0].setDest(rtp, false)
	s.streams[i][side][1].setDest(netip.AddrPortFrom(rtp.Addr(), rtp.Port()+1), false)
}

// Received returns the RTP and RTCP packets received from side's endpoint.
func (s *MediaSession) Received(side int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, st := range s.streams {
		n += st[side][0].rx.Load() + st[side][1].rx.Load()
	}
	return n
}

// Silent is how long ago the quieter side last sent a packet (or the
// session was made).
func (s *MediaSession) Silent(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, min(s.last[sideA].Load(), s.last[sideB].Load())))
}

// Close releases the session's ports. Idempotent.
func (s *MediaSession) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, st := range s.streams {
		for _, side := range st {
			for _, l := range side {
				s.r.release(l)
			}
		}
	}
	s.streams = nil
}

// allocStream opens four sockets: RTP and RTCP (the next port) on each
// side.
func (r *Relay) allocStream(s *MediaSession) ([2][2]*relayLeg, error) {
	var st [2][2]*relayLeg
	for side := range 2 {
		legs, err := r.allocPair(s, side)
		if err != nil {
			if side == 1 {
				r.release(st[0][0])
				r.release(st[0][1])
			}
			return st, err
		}
		st[side] = legs
	}
	st[0][0].peer, st[1][0].peer = st[1][0], st[0][0]
	st[0][1].peer, st[1][1].peer = st[1][1], st[0][1]
	for side := range 2 {
		for k := range 2 {
			r.eng.add(st[side][k])
		}
	}
	return st, nil
}

// allocPair binds an even port and the next one.
func (r *Relay) allocPair(s *MediaSession, side int) ([2]*relayLeg, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return [2]*relayLeg{}, ErrClosed
	}
	span := int(r.cfg.PortMax-r.cfg.PortMin+1) / 2
	for range span {
		p := r.next
		r.next += 2
		if r.next < r.cfg.PortMin || r.next+1 > r.cfg.PortMax || r.next < p {
			r.next = r.cfg.PortMin
		}
		if r.used[p] || r.used[p+1] {
			continue
		}
		a, err := r.eng.open(p)
		if err != nil {
			if errors.Is(err, errPortInUse) {
				continue // taken by someone else
			}
			return [2]*relayLeg{}, err // out of descriptors or memory: trying more ports will not help
		}
		b, err := r.eng.open(p + 1)
		if err != nil {
			r.eng.closeSocket(a)
			if errors.Is(err, errPortInUse) {
				continue
			}
			return [2]*relayLeg{}, err
		}
		r.used[p], r.used[p+1] = true, true
		return [2]*relayLeg{{port: p, side: side, sess: s, sock: a}, {port: p + 1, side: side, sess: s, sock: b}}, nil
	}
	return [2]*relayLeg{}, ErrNoPorts
}

func (r *Relay) release(l *relayLeg) {
	if l == nil || l.done.Swap(true) {
		return
	}
	r.eng.remove(l)
	r.mu.Lock()
	delete(r.used, l.port)
	r.mu.Unlock()
}

// forwarded counts a packet received on l from src and returns where it
// goes (the peer leg and its destination), or false to drop it.
func (r *Relay) forwardTarget(l *relayLeg, src netip.AddrPort, n int) (*relayLeg, rawAddr, bool) {
	l.rx.Add(1)
	l.sess.last[l.side].Store(time.Now().UnixNano())
	l.mu.Lock()
	if !l.latched || l.dest != src {
		l.dest, l.latched, l.raw = src, true, toRaw(src, l.sock.v6)
	}
	l.mu.Unlock()
	p := l.peer
	if p == nil || p.done.Load() {
		r.dropped.Add(1)
		return nil, rawAddr{}, false
	}
	p.mu.Lock()
	raw := p.raw
	p.mu.Unlock()
	if raw.len == 0 {
		r.dropped.Add(1)
		return nil, rawAddr{}, false
	}
	r.packets.Add(1)
	r.bytes.Add(uint64(n))
	return p, raw, true
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

var (
	errEngineClosed = errors.New("relay engine closed")
	// errPortInUse is wrapped by open when another socket has the port.
	errPortInUse = errors.New("port in use")
)
