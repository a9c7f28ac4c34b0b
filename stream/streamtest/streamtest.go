// Package streamtest has pion-based WHIP publishers and WHEP viewers for
// tests and benchmarks of package stream: a publisher of synthetic VP8
// (or H.264) and Opus packets with send times inside, and a viewer that
// counts what arrives, measures delay and can write the video to a file
// for a decoder to check. They are clients only; they trust the server.
package streamtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// Options configure a client. The zero value publishes or plays VP8 and
// Opus at 1.5 Mbit/s, 30 frames per second, a keyframe every second.
type Options struct {
	// Bitrate of the video in bits per second; zero means 1.5 Mbit/s.
	Bitrate int
	// FPS is frames per second; zero means 30.
	FPS int
	// KeyframeEvery is the number of frames between keyframes; zero
	// means FPS.
	KeyframeEvery int
	// NoAudio leaves the audio track out.
	NoAudio bool
	// Header is added to the HTTP requests (Authorization...).
	Header http.Header
	// Client sends the HTTP requests; nil means a 10 s timeout client.
	Client *http.Client
	// Loopback allows loopback ICE candidates.
	Loopback bool
	// VideoSink, if set, receives every video RTP packet a viewer gets.
	VideoSink func(*rtp.Packet)
	// ICEServers are given to the peer connection; RelayOnly makes it
	// use only TURN relays (ICE transport policy "relay").
	ICEServers []webrtc.ICEServer
	RelayOnly  bool
	// UDPConn, if set, carries all ICE traffic (host candidate: its
	// address, which must not be unspecified); e.g. a socket opened in
	// another network namespace. The client closes it.
	UDPConn net.PacketConn
}

func (o Options) withDefaults() Options {
	if o.Bitrate <= 0 {
		o.Bitrate = 1_500_000
	}
	if o.FPS <= 0 {
		o.FPS = 30
	}
	if o.KeyframeEvery <= 0 {
		o.KeyframeEvery = o.FPS
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return o
}

func newAPI(o Options, nack bool) (*webrtc.API, io.Closer, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, nil, err
	}
	ir := &interceptor.Registry{}
	if nack {
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return nil, nil, err
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(o.Loopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	var closer io.Closer = io.NopCloser(nil)
	if o.UDPConn != nil {
		mux := webrtc.NewICEUDPMux(nil, o.UDPConn)
		se.SetICEUDPMux(mux)
		closer = multiCloser{mux, o.UDPConn}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), closer, nil
}

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (o Options) configuration() webrtc.Configuration {
	c := webrtc.Configuration{ICEServers: o.ICEServers}
	if o.RelayOnly {
		c.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return c
}

// exchange posts pc's offer to endpoint and applies the answer; it
// returns the session URL.
func exchange(ctx context.Context, o Options, pc *webrtc.PeerConnection, endpoint string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader([]byte(pc.LocalDescription().SDP)))
	if err != nil {
		return "", err
	}
	for k, v := range o.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := o.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", &HTTPError{Status: resp.StatusCode, Body: string(body)}
	}
	loc := resp.Header.Get("Location")
	if base, err := url.Parse(endpoint); err == nil && loc != "" {
		if u, err := base.Parse(loc); err == nil {
			loc = u.String()
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", err
	}
	return loc, nil
}

// HTTPError is a WHIP or WHEP answer other than 201 Created.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

func deleteSession(o Options, loc string) {
	if loc == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return
	}
	for k, v := range o.Header {
		req.Header[k] = v
	}
	if resp, err := o.Client.Do(req); err == nil {
		resp.Body.Close()
	}
}

// Publisher sends synthetic media to a WHIP endpoint until Close.
type Publisher struct {
	pc       *webrtc.PeerConnection
	o        Options
	loc      string
	stop     chan struct{}
	wg       sync.WaitGroup
	Frames   atomic.Uint64
	PLIs     atomic.Uint64
	forceKey atomic.Bool
	closer   io.Closer
}

// Publish connects to the WHIP endpoint and starts sending.
func Publish(ctx context.Context, endpoint string, o Options) (*Publisher, error) {
	o = o.withDefaults()
	api, closer, err := newAPI(o, true)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(o.configuration())
	if err != nil {
		closer.Close()
		return nil, err
	}
	p := &Publisher{pc: pc, o: o, stop: make(chan struct{}), closer: closer}
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "synthetic")
	if err != nil {
		pc.Close()
		closer.Close()
		return nil, err
	}
	vs, err := pc.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		pc.Close()
		closer.Close()
		return nil, err
	}
	var audio *webrtc.TrackLocalStaticSample
	if !o.NoAudio {
		audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "synthetic")
		if err != nil {
			pc.Close()
			closer.Close()
			return nil, err
		}
		if _, err := pc.AddTransceiverFromTrack(audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			pc.Close()
			closer.Close()
			return nil, err
		}
	}
	if p.loc, err = exchange(ctx, o, pc, endpoint); err != nil {
		pc.Close()
		closer.Close()
		return nil, err
	}
	p.wg.Add(2)
	go p.readRTCP(vs.Sender())
	go p.send(video, audio)
	return p, nil
}

func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	defer p.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.PLIs.Add(1)
				p.forceKey.Store(true)
			}
		}
	}
}

// Frame layout of the synthetic VP8: the first byte is a VP8 payload
// header byte (bit 0 clear for a keyframe), then the send time in unix
// nanoseconds, then filler.
func (p *Publisher) send(video, audio *webrtc.TrackLocalStaticSample) {
	defer p.wg.Done()
	frameDur := time.Second / time.Duration(p.o.FPS)
	size := p.o.Bitrate / 8 / p.o.FPS
	t := time.NewTicker(frameDur)
	defer t.Stop()
	audioEvery := 20 * time.Millisecond
	nextAudio := time.Now()
	n := 0
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			key := n%p.o.KeyframeEvery == 0 || p.forceKey.Swap(false)
			sz := size
			if key {
				sz *= 3
			}
			frame := make([]byte, max(sz, 16))
			frame[0] = 0x01
			if key {
				frame[0] = 0x10
			}
			binary.BigEndian.PutUint64(frame[1:], uint64(now.UnixNano()))
			video.WriteSample(media.Sample{Data: frame, Duration: frameDur})
			p.Frames.Add(1)
			n++
			for audio != nil && !nextAudio.After(now) {
				a := make([]byte, 80)
				a[0] = 0xfc
				binary.BigEndian.PutUint64(a[1:], uint64(now.UnixNano()))
				audio.WriteSample(media.Sample{Data: a, Duration: audioEvery})
				nextAudio = nextAudio.Add(audioEvery)
			}
		}
	}
}

// Close stops sending and ends the session.
func (p *Publisher) Close() error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	deleteSession(p.o, p.loc)
	err := p.pc.Close()
	p.wg.Wait()
	p.closer.Close()
	return err
}

// Viewer receives a stream from a WHEP endpoint and counts it.
type Viewer struct {
	pc     *webrtc.PeerConnection
	o      Options
	loc    string
	start  time.Time
	wg     sync.WaitGroup
	closer io.Closer

	VideoPackets, AudioPackets, Keyframes atomic.Uint64
	Lost                                  atomic.Uint64 // sequence gaps
	firstVideo                            atomic.Int64  // nanoseconds after start
	firstKey                              atomic.Int64

	mu     sync.Mutex
	delays []time.Duration
	mime   string
}

// Play connects to the WHEP endpoint.
func Play(ctx context.Context, endpoint string, o Options) (*Viewer, error) {
	o = o.withDefaults()
	api, closer, err := newAPI(o, false)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(o.configuration())
	if err != nil {
		closer.Close()
		return nil, err
	}
	v := &Viewer{pc: pc, o: o, start: time.Now(), closer: closer}
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}
	if !o.NoAudio {
		kinds = append(kinds, webrtc.RTPCodecTypeAudio)
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			closer.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.wg.Add(1)
		defer v.wg.Done()
		v.read(t)
	})
	if v.loc, err = exchange(ctx, o, pc, endpoint); err != nil {
		pc.Close()
		closer.Close()
		return nil, err
	}
	return v, nil
}

func (v *Viewer) read(t *webrtc.TrackRemote) {
	video := t.Kind() == webrtc.RTPCodecTypeVideo
	if video {
		v.mu.Lock()
		v.mime = t.Codec().MimeType
		v.mu.Unlock()
	}
	var last uint16
	have := false
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		if have && p.SequenceNumber-last > 1 && p.SequenceNumber-last < 0x8000 {
			v.Lost.Add(uint64(p.SequenceNumber - last - 1))
		}
		if !have || int16(p.SequenceNumber-last) > 0 {
			last, have = p.SequenceNumber, true
		}
		if !video {
			v.AudioPackets.Add(1)
			continue
		}
		if v.VideoPackets.Add(1) == 1 {
			v.firstVideo.Store(int64(now.Sub(v.start)))
		}
		if v.o.VideoSink != nil {
			v.o.VideoSink(p)
		}
		// The synthetic VP8 of Publisher: after the payload descriptor
		// (RFC 7741 §4.2), the frame's first byte and its send time.
		if pl, ok := vp8FrameStart(p.Payload); ok && len(pl) >= 9 {
			if pl[0]&0x01 == 0 {
				if v.Keyframes.Add(1) == 1 {
					v.firstKey.Store(int64(now.Sub(v.start)))
				}
			}
			sent := int64(binary.BigEndian.Uint64(pl[1:9]))
			if d := now.UnixNano() - sent; d >= 0 && d < int64(time.Minute) {
				v.mu.Lock()
				if len(v.delays) < 100000 {
					v.delays = append(v.delays, time.Duration(d))
				}
				v.mu.Unlock()
			}
		}
	}
}

// vp8FrameStart returns the VP8 payload after the descriptor when p
// starts a frame.
func vp8FrameStart(p []byte) ([]byte, bool) {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return nil, false
	}
	i := 1
	if p[0]&0x80 != 0 {
		if len(p) <= i {
			return nil, false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 {
			if len(p) <= i {
				return nil, false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 {
			i++
		}
		if ext&0x30 != 0 {
			i++
		}
	}
	if len(p) <= i {
		return nil, false
	}
	return p[i:], true
}

// FirstVideo returns how long after Play the first video packet and the
// first keyframe of a synthetic stream arrived (zero if none yet).
func (v *Viewer) FirstVideo() (packet, keyframe time.Duration) {
	return time.Duration(v.firstVideo.Load()), time.Duration(v.firstKey.Load())
}

// Delays returns and resets the one-way delays measured on frames of a
// synthetic stream.
func (v *Viewer) Delays() []time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	d := v.delays
	v.delays = nil
	return d
}

// Connected reports whether the peer connection is connected.
func (v *Viewer) Connected() bool {
	return v.pc.ConnectionState() == webrtc.PeerConnectionStateConnected
}

// Close ends the session.
func (v *Viewer) Close() error {
	deleteSession(v.o, v.loc)
	err := v.pc.Close()
	v.wg.Wait()
	v.closer.Close()
	return err
}

// ErrTimeout is returned by WaitFor when the condition did not hold in time.
var ErrTimeout = errors.New("timed out")

// WaitFor polls cond every 20 ms until it is true or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return ErrTimeout
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
