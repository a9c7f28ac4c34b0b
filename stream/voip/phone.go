package voip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// DefaultICEAddr is where browsers send WebRTC media: one UDP port for all
// calls and rooms (ICE UDP mux, RFC 8445 host candidates only: no STUN or
// TURN server, the community network routes between members).
const DefaultICEAddr = ":8190"

const (
	ringFor      = 60 * time.Second // an unanswered incoming call gives up
	sdpTimeout   = 5 * time.Second  // ICE gathering
	phoneEvents  = 32
	answerWait   = 90 * time.Second
	bridgeDomain = DefaultDomain
)

// PhonesConfig configures Phones.
type PhonesConfig struct {
	// Server is the box's SIP server; required. Browser lines are bound in
	// its registrar, and the bridge's calls go through it.
	Server *Server
	// ICE is the UDP socket of WebRTC media; nil means one on ICEAddr.
	// Phones closes it.
	ICE net.PacketConn
	// ICEAddr is used when ICE is nil; zero means DefaultICEAddr.
	ICEAddr string
	// Logger receives the bridge's events; nil discards them.
	Logger *slog.Logger
}

// Phones bridges browser softphones to SIP: a back-to-back user agent
// (RFC 7092 §3.1) whose WebRTC leg ends here (pion) and whose SIP leg is a
// user agent on loopback talking to the box's Server. Both legs speak
// G.711 u-law (PCMU), so audio is passed through without transcoding.
// Run serves; safe for concurrent use.
type Phones struct {
	// Immutable after NewPhones.
	srv    *Server
	log    *slog.Logger
	api    *webrtc.API
	iceC   net.PacketConn
	mux    ice.UDPMux
	sipC   net.PacketConn
	ua     *sipgo.UserAgent
	sipSrv *sipgo.Server
	cli    *sipgo.Client
	dc     *sipgo.DialogClientCache
	ds     *sipgo.DialogServerCache
	self   netip.AddrPort // the bridge's SIP address
	rooms  *Rooms

	// mu guards the following.
	mu     sync.Mutex
	lines  map[string]*Line // by extension
	calls  map[string]*bridgeCall
	closed bool

	wg sync.WaitGroup
}

// NewPhones opens the WebRTC media port and the bridge's SIP socket.
func NewPhones(cfg PhonesConfig) (*Phones, error) {
	if cfg.Server == nil {
		return nil, errors.New("phones need a SIP server")
	}
	p := &Phones{srv: cfg.Server, log: orDiscard(cfg.Logger), lines: map[string]*Line{}, calls: map[string]*bridgeCall{}}
	var err error
	p.iceC = cfg.ICE
	if p.iceC == nil {
		if p.iceC, err = net.ListenPacket("udp", cmpOr(cfg.ICEAddr, DefaultICEAddr)); err != nil {
			return nil, fmt.Errorf("listening for webrtc media: %w", err)
		}
	}
	p.mux = webrtc.NewICEUDPMux(nil, p.iceC)
	if p.api = newWebRTCAPI(p.mux, false); p.api == nil {
		p.closeMedia()
		return nil, errors.New("webrtc setup failed")
	}
	p.rooms = NewRooms(p.mux, p.log)
	p.sipC, err = net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		p.closeMedia()
		return nil, fmt.Errorf("listening for the bridge's sip: %w", err)
	}
	p.self = p.sipC.LocalAddr().(*net.UDPAddr).AddrPort()
	if p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("cloudbox-phone"), sipgo.WithUserAgentHostname("127.0.0.1")); err == nil {
		if p.sipSrv, err = sipgo.NewServer(p.ua); err == nil {
			p.cli, err = sipgo.NewClient(p.ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(int(p.self.Port())))
		}
	}
	if err != nil {
		p.sipC.Close()
		p.closeMedia()
		return nil, fmt.Errorf("starting the bridge's sip: %w", err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "phone", Host: "127.0.0.1", Port: int(p.self.Port())}}
	p.dc = sipgo.NewDialogClientCache(p.cli, contact)
	p.ds = sipgo.NewDialogServerCache(p.cli, contact)
	p.sipSrv.OnInvite(p.onInvite)
	p.sipSrv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = p.ds.ReadAck(req, tx) })
	p.sipSrv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.dc.ReadBye(req, tx); err == nil {
			return
		}
		if err := p.ds.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call Does Not Exist", nil))
		}
	})
	p.sipSrv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if c := p.callBySIP(req.CallID().Value()); c != nil {
			c.end("cancelled")
		}
	})
	return p, nil
}

// newWebRTCAPI makes the pion API of the bridge and the rooms: G.711
// u-law (bridge) or Opus and VP8 (rooms), media on one muxed UDP socket,
// host candidates only, no mDNS.
func newWebRTCAPI(mux ice.UDPMux, rooms bool) *webrtc.API {
	m := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0}}
	if rooms {
		codecs = []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0},
		}
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil
		}
	}
	if rooms {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil
		}
	}
	var se webrtc.SettingEngine
	se.SetICEUDPMux(mux)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetIncludeLoopbackCandidate(true)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

func newRoomsAPI(mux ice.UDPMux) *webrtc.API { return newWebRTCAPI(mux, true) }

// Rooms are the conference rooms, on the same media port.
func (p *Phones) Rooms() *Rooms { return p.rooms }

func (p *Phones) closeMedia() {
	if p.mux != nil {
		p.mux.Close()
	}
	p.iceC.Close()
}

// ICEAddr is the local address of the WebRTC media port.
func (p *Phones) ICEAddr() net.Addr { return p.iceC.LocalAddr() }

// Run serves the bridge until ctx ends; it ends every call then.
func (p *Phones) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- p.sipSrv.ServeUDP(p.sipC) }()
	<-ctx.Done()
	p.mu.Lock()
	p.closed = true
	calls := make([]*bridgeCall, 0, len(p.calls))
	for _, c := range p.calls {
		calls = append(calls, c)
	}
	lines := p.lines
	p.lines = map[string]*Line{}
	p.mu.Unlock()
	for _, c := range calls {
		c.hangup()
	}
	for _, l := range lines {
		l.close()
	}
	p.wg.Wait()
	err := errors.Join(p.rooms.Close(), p.ua.Close(), p.sipC.Close())
	<-done
	p.closeMedia()
	return err
}

// PhoneEvent tells a browser line what happens to its calls.
type PhoneEvent struct {
	// Type is "incoming", "ringing", "answered" or "ended".
	Type string `json:"type"`
	Call string `json:"call"`
	// Peer is the other party's extension.
	Peer string `json:"peer,omitempty"`
	// Reason says why a call ended.
	Reason string `json:"reason,omitempty"`
}

// Line is an extension whose softphone page is open: calls to it ring
// there. Events delivers what happens; Close unregisters it.
type Line struct {
	p      *Phones
	ext    string
	events chan PhoneEvent
	unbind func()
	once   sync.Once
	done   chan struct{}
}

// Open registers ext as reachable by the browser (replacing a line the
// extension had open elsewhere).
func (p *Phones) Open(ext string) (*Line, error) {
	l := &Line{p: p, ext: ext, events: make(chan PhoneEvent, phoneEvents), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	old := p.lines[ext]
	p.lines[ext] = l
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
	l.unbind = p.srv.bindLocal(ext, sip.Uri{Scheme: "sip", User: ext, Host: "127.0.0.1", Port: int(p.self.Port())})
	return l, nil
}

// Events delivers the line's events; it is closed with the line.
func (l *Line) Events() <-chan PhoneEvent { return l.events }

// Done is closed when the line closes (Close, or another page opened it).
func (l *Line) Done() <-chan struct{} { return l.done }

// Close unregisters the line and hangs up its calls.
func (l *Line) Close() {
	l.p.mu.Lock()
	if l.p.lines[l.ext] == l {
		delete(l.p.lines, l.ext)
	}
	var calls []*bridgeCall
	for _, c := range l.p.calls {
		if c.line == l {
			calls = append(calls, c)
		}
	}
	l.p.mu.Unlock()
	for _, c := range calls {
		c.hangup()
	}
	l.close()
}

func (l *Line) close() {
	l.once.Do(func() {
		if l.unbind != nil {
			l.unbind()
		}
		close(l.done)
	})
}

func (l *Line) emit(e PhoneEvent) {
	select {
	case <-l.done:
	case l.events <- e:
	default: // a page that does not read loses events, not the bridge
	}
}

// bridgeCall is one call between a browser and SIP.
type bridgeCall struct {
	id      string
	line    *Line
	peer    string
	p       *Phones
	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticRTP
	rtpConn *net.UDPConn
	remote  atomic.Pointer[netip.AddrPort] // SIP side's media
	ctx     context.Context
	cancel  context.CancelFunc
	// Packets browser to SIP and SIP to browser.
	toSIP, toBrowser atomic.Uint64

	mu       sync.Mutex
	sipID    string // Call-ID of the SIP leg
	out      *sipgo.DialogClientSession
	in       *sipgo.DialogServerSession
	answered chan string // the browser's offer for an incoming call
	ended    bool
}

func (p *Phones) newCall(l *Line, peer string) (*bridgeCall, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("opening the bridge's rtp socket: %w", err)
	}
	c := &bridgeCall{id: hex.EncodeToString(id[:]), line: l, peer: peer, p: p, rtpConn: rc, answered: make(chan string, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		rc.Close()
		return nil, ErrClosed
	}
	p.calls[c.id] = c
	p.mu.Unlock()
	return c, nil
}

func (p *Phones) call(l *Line, id string) *bridgeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls[id]
	if c == nil || c.line != l {
		return nil
	}
	return c
}

func (p *Phones) callBySIP(callID string) *bridgeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.calls {
		c.mu.Lock()
		id := c.sipID
		c.mu.Unlock()
		if id == callID {
			return c
		}
	}
	return nil
}

// webrtcAnswer sets up the browser leg from its offer and returns the
// answer, with all candidates (no trickle).
func (c *bridgeCall) webrtcAnswer(offer string) (string, error) {
	pc, err := c.p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("creating peer connection: %w", err)
	}
	c.pc = pc
	c.track, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "cloudbox-"+c.id)
	if err != nil {
		return "", fmt.Errorf("creating track: %w", err)
	}
	if _, err := pc.AddTrack(c.track); err != nil {
		return "", fmt.Errorf("adding track: %w", err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if ap := c.remote.Load(); ap != nil {
				if _, err := c.rtpConn.WriteToUDPAddrPort(buf[:n], *ap); err == nil {
					c.toSIP.Add(1)
				}
			}
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			go c.hangup()
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: browser offer: %v", ErrMalformed, err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("answering the browser (it must offer PCMU audio): %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("setting answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(sdpTimeout):
	}
	return pc.LocalDescription().SDP, nil
}

// sipOffer is the SDP of the SIP leg: PCMU on the bridge's RTP socket.
func (c *bridgeCall) sipOffer() []byte {
	port := c.rtpConn.LocalAddr().(*net.UDPAddr).Port
	return []byte("v=0\r\no=cloudbox " + strconv.FormatInt(time.Now().Unix(), 10) + " 1 IN IP4 127.0.0.1\r\ns=cloudbox phone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n")
}

// setRemote takes the SIP side's media address from its SDP.
func (c *bridgeCall) setRemote(body []byte) error {
	media, err := parseSDP(body)
	if err != nil {
		return err
	}
	for _, m := range media {
		if m.Kind == "audio" && m.Port != 0 && m.Addr.IsValid() {
			ap := netip.AddrPortFrom(m.Addr.Unmap(), m.Port)
			c.remote.Store(&ap)
			return nil
		}
	}
	return fmt.Errorf("%w: no audio stream in the answer", ErrMalformed)
}

// pump forwards the SIP side's RTP to the browser until the call ends.
func (c *bridgeCall) pump() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, src, err := c.rtpConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = unmapAP(src)
		if cur := c.remote.Load(); cur == nil || *cur != src {
			c.remote.Store(&src) // symmetric RTP
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if c.track.WriteRTP(&pkt) == nil {
			c.toBrowser.Add(1)
		}
	}
}

// Dial calls extension to from the line: offer is the browser's SDP offer,
// the answer is returned at once; the call's progress comes as events.
func (l *Line) Dial(to, offer string) (call, answer string, err error) {
	c, err := l.p.newCall(l, to)
	if err != nil {
		return "", "", err
	}
	if answer, err = c.webrtcAnswer(offer); err != nil {
		c.end("failed")
		return "", "", err
	}
	l.p.wg.Add(2)
	go func() {
		defer l.p.wg.Done()
		c.pump()
	}()
	go func() {
		defer l.p.wg.Done()
		c.dialSIP(to)
	}()
	return c.id, answer, nil
}

func (c *bridgeCall) dialSIP(to string) {
	srvAP := c.p.srv.Addr()
	host := srvAP.Addr()
	if !host.IsValid() || host.IsUnspecified() {
		host = netip.MustParseAddr("127.0.0.1")
	}
	recipient := sip.Uri{Scheme: "sip", User: to, Host: host.String(), Port: int(srvAP.Port())}
	var tag [6]byte
	_, _ = rand.Read(tag[:])
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: c.line.ext, Host: bridgeDomain}, Params: sip.HeaderParams{{K: "tag", V: hex.EncodeToString(tag[:])}}}
	toH := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to, Host: bridgeDomain}}
	ct := sip.ContentTypeHeader("application/sdp")
	sess, err := c.p.dc.Invite(c.ctx, recipient, c.sipOffer(), from, toH, &ct, sip.NewHeader(bridgeHeader, c.p.srv.bridgeToken))
	if err != nil {
		c.end("failed: " + err.Error())
		return
	}
	c.mu.Lock()
	c.out = sess
	c.sipID = sess.InviteRequest.CallID().Value()
	c.mu.Unlock()
	err = sess.WaitAnswer(c.ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == 180 || res.StatusCode == 183 {
			c.line.emit(PhoneEvent{Type: "ringing", Call: c.id, Peer: c.peer})
		}
		return nil
	}})
	if err != nil {
		var de *sipgo.ErrDialogResponse
		reason := "failed"
		if errors.As(err, &de) {
			reason = strconv.Itoa(de.Res.StatusCode) + " " + de.Res.Reason
		} else if c.ctx.Err() != nil {
			reason = "cancelled"
		}
		c.end(reason)
		return
	}
	if err := c.setRemote(sess.InviteResponse.Body()); err != nil {
		_ = sess.Ack(c.ctx)
		_ = sess.Bye(context.Background())
		c.end("488 Not Acceptable Here")
		return
	}
	if err := sess.Ack(c.ctx); err != nil {
		c.end("failed: " + err.Error())
		return
	}
	c.line.emit(PhoneEvent{Type: "answered", Call: c.id, Peer: c.peer})
	select {
	case <-sess.Context().Done():
		c.end("hung up by " + c.peer)
	case <-c.ctx.Done():
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sess.Bye(ctx)
		cancel()
		c.end("hung up")
	}
}

// onInvite rings the browser line of the called extension.
func (p *Phones) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	ext := req.Recipient.User
	p.mu.Lock()
	l := p.lines[ext]
	p.mu.Unlock()
	if l == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		return
	}
	sess, err := p.ds.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer sess.Close()
	c, err := p.newCall(l, req.From().Address.User)
	if err != nil {
		_ = sess.Respond(503, "Service Unavailable", nil)
		return
	}
	c.mu.Lock()
	c.in, c.sipID = sess, req.CallID().Value()
	c.mu.Unlock()
	if err := c.setRemote(req.Body()); err != nil {
		_ = sess.Respond(488, "Not Acceptable Here", nil)
		c.end("488 Not Acceptable Here")
		return
	}
	_ = sess.Respond(180, "Ringing", nil)
	l.emit(PhoneEvent{Type: "incoming", Call: c.id, Peer: c.peer})
	var offer string
	select {
	case offer = <-c.answered:
	case <-c.ctx.Done():
		_ = sess.Respond(486, "Busy Here", nil)
		c.end("declined")
		return
	case <-time.After(ringFor):
		_ = sess.Respond(480, "Temporarily Unavailable", nil)
		c.end("not answered")
		return
	}
	answer, err := c.webrtcAnswer(offer)
	if err != nil {
		_ = sess.Respond(500, "Browser Failed", nil)
		c.end("failed")
		c.answerErr(err)
		return
	}
	c.answerOK(answer)
	if err := sess.RespondSDP(c.sipOffer()); err != nil {
		c.end("failed")
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		c.pump()
	}()
	l.emit(PhoneEvent{Type: "answered", Call: c.id, Peer: c.peer})
	select {
	case <-sess.Context().Done():
		c.end("hung up by " + c.peer)
	case <-c.ctx.Done():
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = sess.Bye(ctx)
		cancel()
		c.end("hung up")
	}
}

// answerResult carries the browser's answer back to Answer.
type answerResult struct {
	sdp string
	err error
}

var answerResults sync.Map // call id -> chan answerResult

func (c *bridgeCall) answerOK(sdp string) {
	if ch, ok := answerResults.LoadAndDelete(c.id); ok {
		ch.(chan answerResult) <- answerResult{sdp: sdp}
	}
}

func (c *bridgeCall) answerErr(err error) {
	if ch, ok := answerResults.LoadAndDelete(c.id); ok {
		ch.(chan answerResult) <- answerResult{err: err}
	}
}

// Answer accepts an incoming call with the browser's offer and returns the
// answer for it.
func (l *Line) Answer(call, offer string) (string, error) {
	c := l.p.call(l, call)
	if c == nil {
		return "", fmt.Errorf("no call %q on this line", call)
	}
	ch := make(chan answerResult, 1)
	answerResults.Store(c.id, ch)
	select {
	case c.answered <- offer:
	default:
		answerResults.Delete(c.id)
		return "", fmt.Errorf("call %q is already answered", call)
	}
	select {
	case r := <-ch:
		return r.sdp, r.err
	case <-c.ctx.Done():
		answerResults.Delete(c.id)
		return "", fmt.Errorf("call %q ended", call)
	case <-time.After(answerWait):
		answerResults.Delete(c.id)
		return "", fmt.Errorf("call %q: answering timed out", call)
	}
}

// Hangup ends a call of the line (or declines it while it rings).
func (l *Line) Hangup(call string) error {
	c := l.p.call(l, call)
	if c == nil {
		return fmt.Errorf("no call %q on this line", call)
	}
	c.hangup()
	return nil
}

// PhoneCall is a browser call, for the API.
type PhoneCall struct {
	ID        string `json:"id"`
	Line      string `json:"line"`
	Peer      string `json:"peer"`
	ToSIP     uint64 `json:"to_sip"`
	ToBrowser uint64 `json:"to_browser"`
}

// Calls returns the browser calls in progress.
func (p *Phones) Calls() []PhoneCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PhoneCall, 0, len(p.calls))
	for _, c := range p.calls {
		out = append(out, PhoneCall{ID: c.id, Line: c.line.ext, Peer: c.peer, ToSIP: c.toSIP.Load(), ToBrowser: c.toBrowser.Load()})
	}
	return out
}

func (c *bridgeCall) hangup() { c.cancel() }

// end releases the call and tells the line.
func (c *bridgeCall) end(reason string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.mu.Unlock()
	c.cancel()
	c.p.mu.Lock()
	delete(c.p.calls, c.id)
	c.p.mu.Unlock()
	if c.pc != nil {
		_ = c.pc.Close()
	}
	c.rtpConn.Close()
	c.line.emit(PhoneEvent{Type: "ended", Call: c.id, Peer: c.peer, Reason: reason})
}
