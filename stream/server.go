package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// DefaultICEPort is the UDP and TCP port that carries every WebRTC session
// of a box (ICE UDP and TCP multiplexing): one port to open in a firewall.
const DefaultICEPort = 8189

// Defaults of Config.
const (
	DefaultMaxViewers   = 2000
	DefaultMaxStreams   = 64
	DefaultRelayIdle    = 15 * time.Second
	DefaultSourceGrace  = 5 * time.Second
	DefaultSetupTimeout = 5 * time.Second
)

// Config configures a Server. The zero value serves WebRTC on UDP and TCP
// port DefaultICEPort of every address, without relaying.
type Config struct {
	// ICEUDPAddr is the UDP address shared by all sessions; zero means
	// ":8189" (DefaultICEPort). Port 0 picks a free port.
	ICEUDPAddr string
	// ICETCPAddr is the TCP address for ICE over TCP (RFC 6544, passive);
	// zero means ":8189". "off" serves no ICE over TCP.
	ICETCPAddr string
	// IncludeLoopback offers loopback host candidates too; for tests
	// where everything runs on one host. Zero offers none.
	IncludeLoopback bool
	// IPFilter, if not nil, chooses which local addresses are offered as
	// host candidates. Nil offers every address.
	IPFilter func(net.IP) bool

	// Sources returns where a stream that is not live on this box can be
	// pulled from, best first (nearest box, relays before the origin when
	// nearer); nil or an empty answer means nowhere. It is called again at
	// every re-attach; a relayed stream for which it names no box for
	// SourceGrace ends. Sources must not block for long.
	Sources func(name string) []Source
	// HTTPClient sends the WHEP requests to Sources; nil means a client
	// with a 5 s timeout.
	HTTPClient *http.Client
	// RelayIdle is how long a relayed stream without viewers keeps
	// pulling; zero means DefaultRelayIdle.
	RelayIdle time.Duration
	// SourceGrace is how long a stream whose publisher left stays, so
	// that a publisher that reconnects keeps its viewers; zero means
	// DefaultSourceGrace.
	SourceGrace time.Duration
	// SetupTimeout bounds ICE gathering for an answer and waiting for a
	// relayed stream's tracks; zero means DefaultSetupTimeout.
	SetupTimeout time.Duration

	// MaxViewers and MaxStreams bound the sessions of the box; zero means
	// DefaultMaxViewers and DefaultMaxStreams.
	MaxViewers, MaxStreams int

	// RTPHost is the address RTP ingest sockets listen on; zero means
	// every address.
	RTPHost string

	// TURNAddr is the UDP address of the built-in TURN server (RFC 8656),
	// for clients that reach the box only through a relay; zero means
	// ":3478" (DefaultTURNPort), "off" runs none.
	TURNAddr string
	// TURNSecret signs the TURN credentials (TURNCredential); zero means
	// a random secret, so credentials end with the server.
	TURNSecret []byte
	// TURNRelayIP is the address of the relays, one of the box's (they are
	// bound to it); zero means the box's
	// first global IPv4 address at each allocation.
	TURNRelayIP net.IP

	// NodeID identifies this box in the WHEP requests it sends to relay
	// a stream (header Cloudbox-Relay), so that the source shows who
	// pulls and loops can be avoided. Zero sends none.
	NodeID string

	// Logger receives the server's events; nil discards them.
	Logger *slog.Logger
}

// Source is a place a stream can be pulled from.
type Source struct {
	// URL is the WHEP endpoint of the stream there.
	URL string
	// NodeID and Name identify the box, for the API and logs.
	NodeID, Name string
	// RTT is the round-trip time to the box, for logs; zero if unknown.
	RTT time.Duration
}

func (c Config) withDefaults() Config {
	if c.ICEUDPAddr == "" {
		c.ICEUDPAddr = fmt.Sprintf(":%d", DefaultICEPort)
	}
	if c.ICETCPAddr == "" {
		c.ICETCPAddr = fmt.Sprintf(":%d", DefaultICEPort)
	}
	if c.TURNAddr == "" {
		c.TURNAddr = fmt.Sprintf(":%d", DefaultTURNPort)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.RelayIdle <= 0 {
		c.RelayIdle = DefaultRelayIdle
	}
	if c.SourceGrace <= 0 {
		c.SourceGrace = DefaultSourceGrace
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = DefaultSetupTimeout
	}
	if c.MaxViewers <= 0 {
		c.MaxViewers = DefaultMaxViewers
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server holds the live streams of a box. Its methods are safe for
// concurrent use. Close ends every session.
type Server struct {
	// Immutable after New.
	cfg  Config
	log  *slog.Logger
	udp  net.PacketConn
	tcp  net.Listener // nil without ICE over TCP
	turn *turnServer  // nil without TURN
	// turnProblem says why TURN does not run although configured.
	turnProblem string
	udpMux      ice.UDPMux
	tcpMux      ice.TCPMux
	ingestAPI   *webrtc.API // publishers and upstream pulls: NACK generator, reports, TWCC
	playAPI     *webrtc.API // viewers: no interceptors, feedback served by the tracks

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background goroutines

	counters counters

	// mu guards the following.
	mu       sync.Mutex
	hubs     map[string]*hub
	sessions map[string]session
	viewers  int
	closed   bool
}

// session is a WHIP or WHEP session resource.
type session interface {
	close() error
}

// New opens the ICE sockets and returns a running Server.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "stream"),
		hubs: make(map[string]*hub), sessions: make(map[string]session)}
	var err error
	// With port 0, TCP takes the port UDP got (one number for both, as a
	// firewall sees it); another UDP port is tried when that one is taken.
	for try := 0; ; try++ {
		s.udp, s.tcp, err = listenICE(cfg.ICEUDPAddr, cfg.ICETCPAddr)
		if err == nil || try == 4 || !strings.HasSuffix(cfg.ICETCPAddr, ":0") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.TURNAddr != "off" {
		// Streaming works without TURN for most clients: a TURN port in
		// use is reported, not fatal.
		if s.turn, err = newTURNServer(cfg.TURNAddr, cfg.TURNSecret, cfg.TURNRelayIP); err != nil {
			s.turnProblem = err.Error()
			s.log.Warn("turn not running", "error", err)
		}
	}
	if err := s.buildAPIs(); err != nil {
		s.closeSockets()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.tick()
	return s, nil
}

// iceSocketBuffer is the size of the shared ICE socket's buffers: about
// 100 ms of 300 Mbit/s.
const iceSocketBuffer = 4 << 20

// listenICE opens the ICE sockets; tcpAddr "off" opens no TCP socket.
func listenICE(udpAddr, tcpAddr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	udp, err := lc.ListenPacket(context.Background(), "udp", udpAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening for ICE on udp %s: %w", udpAddr, err)
	}
	setSocketBuffers(udp, iceSocketBuffer)
	if tcpAddr == "off" {
		return udp, nil, nil
	}
	if host, port, err := net.SplitHostPort(tcpAddr); err == nil && port == "0" {
		tcpAddr = net.JoinHostPort(host, fmt.Sprint(udp.LocalAddr().(*net.UDPAddr).Port))
	}
	tcp, err := lc.Listen(context.Background(), "tcp", tcpAddr)
	if err != nil {
		udp.Close()
		return nil, nil, fmt.Errorf("listening for ICE on tcp %s: %w", tcpAddr, err)
	}
	return udp, tcp, nil
}

func (s *Server) closeSockets() {
	if s.udpMux != nil {
		s.udpMux.Close()
	}
	if s.tcpMux != nil {
		s.tcpMux.Close()
	}
	s.udp.Close()
	if s.tcp != nil {
		s.tcp.Close()
	}
	if s.turn != nil {
		s.turn.close()
	}
}

// TURNProblem says why the TURN server does not run although Config
// asked for it; "" when it runs or was not asked for.
func (s *Server) TURNProblem() string { return s.turnProblem }

// ICEPort returns the UDP port all sessions share.
func (s *Server) ICEPort() int { return s.udp.LocalAddr().(*net.UDPAddr).Port }

func (s *Server) buildAPIs() error {
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6})
	s.udpMux = newHostMux(s.udp, s.cfg.IncludeLoopback, s.cfg.IPFilter)
	se.SetICEUDPMux(s.udpMux)
	if s.tcp != nil {
		s.tcpMux = webrtc.NewICETCPMux(nil, s.tcp, 64)
		se.SetICETCPMux(s.tcpMux)
	}
	se.SetIncludeLoopbackCandidate(s.cfg.IncludeLoopback)
	if s.cfg.IPFilter != nil {
		se.SetIPFilter(s.cfg.IPFilter)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(3*time.Second, 6*time.Second, time.Second)
	se.DisableActiveTCP(true)
	se.SetFireOnTrackBeforeFirstRTP(true)

	// Publishers and pulls: receive with NACKs, receiver reports and
	// transport-wide congestion control feedback.
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		return err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		return fmt.Errorf("configuring nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return fmt.Errorf("configuring rtcp reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
		return fmt.Errorf("configuring twcc: %w", err)
	}
	s.ingestAPI = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))

	// Viewers: the tracks answer NACKs and keyframe requests themselves,
	// from history shared by all viewers.
	pme := &webrtc.MediaEngine{}
	if err := registerCodecs(pme); err != nil {
		return err
	}
	pse := se
	pse.SetFireOnTrackBeforeFirstRTP(false)
	s.playAPI = webrtc.NewAPI(webrtc.WithMediaEngine(pme), webrtc.WithSettingEngine(pse),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	return nil
}

// registerCodecs registers the codecs passed through: Opus, VP8 and H.264
// (packetization mode 1, the profiles browsers and OBS send).
func registerCodecs(me *webrtc.MediaEngine) error {
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	video := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: fb}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: fb}, PayloadType: 104},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", RTCPFeedback: fb}, PayloadType: 106},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032", RTCPFeedback: fb}, PayloadType: 112},
	}
	for _, c := range video {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("registering %s: %w", c.MimeType, err)
		}
	}
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeOpus, ClockRate: 48000,
		Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}
	if err := me.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("registering opus: %w", err)
	}
	return nil
}

// Close ends every session and stops the server; it waits for the
// server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	hubs := make([]*hub, 0, len(s.hubs))
	for _, h := range s.hubs {
		hubs = append(hubs, h)
	}
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, h := range hubs {
		errs = append(errs, h.close())
	}
	s.wg.Wait()
	s.closeSockets()
	return errors.Join(errs...)
}

// Run waits until ctx is done, then closes the server.
func (s *Server) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	return s.Close()
}

// tick updates bitrates and ends idle relays and streams whose source is
// gone.
func (s *Server) tick() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			hubs := make([]*hub, 0, len(s.hubs))
			for _, h := range s.hubs {
				hubs = append(hubs, h)
			}
			s.mu.Unlock()
			for _, h := range hubs {
				if h.expired(now) {
					s.log.Info("stream ended", "stream", h.name)
					h.close()
				} else {
					h.sample(now)
				}
			}
		}
	}
}

// newID returns a random session or track identifier.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// addSession registers a session resource under a new ID.
func (s *Server) addSession(x session) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	id := newID()
	s.sessions[id] = x
	return id, nil
}

func (s *Server) dropSession(id string) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

// CloseSession ends the WHIP or WHEP session id (an HTTP DELETE on its
// resource, RFC 9725 §4.3). It returns ErrNotFound for an unknown ID.
func (s *Server) CloseSession(id string) error {
	s.mu.Lock()
	x, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("session %q: %w", id, ErrNotFound)
	}
	return x.close()
}

// answer completes an offer/answer exchange on pc as the answerer and
// returns the answer with every candidate (no trickle ICE).
func (s *Server) answer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: creating answer: %v", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("%w: setting answer: %v", ErrBadOffer, err)
	}
	if err := s.waitGathered(ctx, gathered); err != nil {
		return "", err
	}
	return pc.LocalDescription().SDP, nil
}

func (s *Server) waitGathered(ctx context.Context, gathered <-chan struct{}) error {
	t := time.NewTimer(s.cfg.SetupTimeout)
	defer t.Stop()
	select {
	case <-gathered:
		return nil
	case <-t.C:
		return errors.New("gathering ICE candidates timed out")
	case <-ctx.Done():
		return ctx.Err()
	}
}
