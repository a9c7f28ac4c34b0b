package stream

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PublishOptions are the stream's details given by its publisher.
type PublishOptions struct {
	// Description is shown in the "Live now" list; optional.
	Description string
}

// Answer is the result of a successful WHIP or WHEP offer.
type Answer struct {
	// SDP is the answer, with every ICE candidate.
	SDP string
	// Session identifies the session resource; CloseSession(Session)
	// ends it.
	Session string
}

// remoteSet collects the tracks of a peer connection as pion reports them
// and attaches them to a hub once all expected ones are there.
type remoteSet struct {
	h        *hub
	pc       *webrtc.PeerConnection
	f        *feed
	expected int

	lastPacket atomic.Int64 // unix nanoseconds
	readers    sync.WaitGroup
	problem    atomic.Pointer[string]

	mu     sync.Mutex
	remote []*webrtc.TrackRemote
	codecs map[*webrtc.TrackRemote]webrtc.RTPCodecCapability
	ready  chan struct{}
	tracks []*track
	gen    uint64
}

func newRemoteSet(h *hub, pc *webrtc.PeerConnection, f *feed, expected int) *remoteSet {
	rs := &remoteSet{h: h, pc: pc, f: f, expected: expected, ready: make(chan struct{})}
	f.keyframe = rs.keyframe
	pc.OnTrack(rs.onTrack)
	return rs
}

// keyframe sends a PLI (RFC 4585 §6.3.1) for the video tracks upstream.
func (rs *remoteSet) keyframe() {
	rs.mu.Lock()
	var pkts []rtcp.Packet
	for _, r := range rs.remote {
		if r.Kind() == webrtc.RTPCodecTypeVideo {
			pkts = append(pkts, &rtcp.PictureLossIndication{MediaSSRC: uint32(r.SSRC())})
		}
	}
	rs.mu.Unlock()
	if len(pkts) > 0 {
		rs.pc.WriteRTCP(pkts)
	}
}

func (rs *remoteSet) onTrack(r *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	rs.readers.Add(1)
	defer rs.readers.Done()
	rs.mu.Lock()
	for _, x := range rs.remote {
		if x.Kind() == r.Kind() {
			// One track per kind: a second (simulcast layer) is ignored.
			rs.mu.Unlock()
			return
		}
	}
	rs.remote = append(rs.remote, r)
	// Before the first packet the track may not know its codec yet; the
	// receiver's negotiated parameters do.
	c := r.Codec().RTPCodecCapability
	if c.MimeType == "" {
		if ps := recv.GetParameters().Codecs; len(ps) > 0 {
			c = ps[0].RTPCodecCapability
		}
	}
	if rs.codecs == nil {
		rs.codecs = make(map[*webrtc.TrackRemote]webrtc.RTPCodecCapability)
	}
	rs.codecs[r] = c
	if len(rs.remote) == rs.expected {
		// Video first, then audio: the same order at every attach.
		slices.SortStableFunc(rs.remote, func(a, b *webrtc.TrackRemote) int { return int(b.Kind()) - int(a.Kind()) })
		codecs := make([]webrtc.RTPCodecCapability, len(rs.remote))
		for i, x := range rs.remote {
			codecs[i] = rs.codecs[x]
		}
		rs.tracks, rs.gen = rs.h.attachSource(rs.f, codecs)
		close(rs.ready)
	}
	rs.mu.Unlock()
	select {
	case <-rs.ready:
	case <-rs.h.closed:
		return
	}
	rs.mu.Lock()
	i := slices.Index(rs.remote, r)
	tracks, gen := rs.tracks, rs.gen
	rs.mu.Unlock()
	if tracks[i].video {
		tracks[i].requestKeyframe()
	}
	rs.read(r, tracks, i, gen)
}

// read pushes the packets of r until it fails.
func (rs *remoteSet) read(r *webrtc.TrackRemote, tracks []*track, i int, gen uint64) {
	checkB := strings.EqualFold(tracks[i].codec.MimeType, mimeH264)
	for {
		buf := make([]byte, 1500)
		n, _, err := r.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		switch forward(tracks[i], gen, buf[:n], checkB, now) {
		case pktBFrame:
			rs.fail(bFrameProblem)
			return
		case pktOK:
			rs.lastPacket.Store(now.UnixNano())
		}
	}
}

// Results of forward.
const (
	pktOK = iota
	pktSkipped
	pktBFrame
)

// forward parses one RTP packet (RFC 3550 §5.1) and pushes it to t; with
// checkB it refuses H.264 B slices.
func forward(t *track, gen uint64, pkt []byte, checkB bool, now time.Time) int {
	var hdr rtp.Header
	hl, err := hdr.Unmarshal(pkt)
	if err != nil {
		return pktSkipped
	}
	payload := pkt[hl:]
	if hdr.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		if pad > len(payload) {
			return pktSkipped
		}
		payload = payload[:len(payload)-pad]
	}
	if len(payload) == 0 {
		return pktSkipped
	}
	if checkB {
		if st, ok := h264SliceType(payload); ok && isBSlice(st) {
			return pktBFrame
		}
	}
	t.push(gen, &hdr, payload, now)
	return pktOK
}

// fail refuses the source with a problem for the API.
func (rs *remoteSet) fail(problem string) {
	rs.problem.CompareAndSwap(nil, &problem)
	go rs.pc.Close()
}

// end detaches the source from the hub after its connection closed.
func (rs *remoteSet) end() {
	rs.pc.Close()
	rs.readers.Wait()
	problem := ""
	if p := rs.problem.Load(); p != nil {
		problem = *p
	}
	rs.h.detachSource(rs.f, problem)
}

// publisher is a WHIP session.
type publisher struct {
	rs       *remoteSet
	once     sync.Once
	finished chan struct{}
}

func (p *publisher) close() error {
	p.once.Do(func() {
		p.rs.end()
		close(p.finished)
	})
	return nil
}

// Publish starts a WHIP session (RFC 9725 §4.2) for stream name with an
// SDP offer that sends audio and/or video. It fails with ErrExists when
// the stream already has a source, ErrBadOffer or ErrUnsupportedCodec for
// an offer it cannot use, ErrTooMany at the stream limit.
func (s *Server) Publish(ctx context.Context, name, offer string, opt PublishOptions) (Answer, error) {
	if err := ValidName(name); err != nil {
		return Answer{}, err
	}
	sum, err := checkOffer(offer, true)
	if err != nil {
		s.counters.rejected.Add(1)
		return Answer{}, err
	}
	f := &feed{kind: SourceWHIP}
	h, created, err := s.claim(name, f)
	if err != nil {
		return Answer{}, err
	}
	fail := func(err error) (Answer, error) {
		s.counters.rejected.Add(1)
		h.detachSource(f, "")
		if created {
			h.close()
		}
		return Answer{}, err
	}
	h.setDescription(opt.Description)
	pc, err := s.ingestAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fail(fmt.Errorf("creating peer connection: %w", err))
	}
	rs := newRemoteSet(h, pc, f, sum.audio+sum.video)
	pub := &publisher{rs: rs, finished: make(chan struct{})}
	f.close = pub.close
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		return fail(fmt.Errorf("%w: %v", ErrBadOffer, err))
	}
	ans, err := s.answer(ctx, pc)
	if err != nil {
		pc.Close()
		return fail(err)
	}
	if n, err := countSections(ans, "recvonly", "sendrecv"); err != nil || n == 0 {
		pc.Close()
		return fail(fmt.Errorf("%w: none of the offered codecs can be passed through; offer VP8 or H.264 (packetization-mode 1) video and Opus audio", ErrUnsupportedCodec))
	} else {
		rs.expected = n
	}
	id, err := s.addSession(pub)
	if err != nil {
		pc.Close()
		return fail(err)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			s.dropSession(id)
			go pub.close()
		}
	})
	s.log.Info("publisher connected", "stream", name, "session", id)
	return Answer{SDP: ans, Session: id}, nil
}

// claim reserves stream name for a new local source, creating its hub if
// needed.
func (s *Server) claim(name string, f *feed) (*hub, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	h := s.hubs[name]
	if h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.relay {
			return nil, false, fmt.Errorf("%w: %q is live on another box of the community; choose another name", ErrExists, name)
		}
		if h.src != nil {
			return nil, false, fmt.Errorf("%w: %q has a publisher; stop it first or choose another name", ErrExists, name)
		}
		h.src = f
		return h, false, nil
	}
	if len(s.hubs) >= s.cfg.MaxStreams {
		return nil, false, fmt.Errorf("%w: this box carries %d streams already", ErrTooMany, len(s.hubs))
	}
	h = newHub(s, name, false)
	h.src = f
	s.hubs[name] = h
	return h, true, nil
}
