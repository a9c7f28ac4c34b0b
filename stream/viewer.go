package stream

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// viewerQueue is the length of a viewer's queue in packets: a group of
// pictures of a 1.5 Mbit/s stream with a 2 s keyframe interval fits.
const viewerQueue = 512

// item is one queued packet and the viewer's track it goes out on.
type item struct {
	p   *packet
	out *localTrack
}

// viewer is one WHEP session (a browser, or a box that relays the
// stream). Its writer goroutine drains queue; sources never block on it.
type viewer struct {
	// Immutable after newViewer.
	id    string
	hub   *hub
	pc    *webrtc.PeerConnection
	queue chan item
	outs  []*localTrack
	sinks []*sink
	start time.Time
	// relay is the node ID of a box that pulls the stream to relay it, ""
	// for a person.
	relay string

	sent, dropped, retransmitted atomic.Uint64

	closeOnce sync.Once
	done      chan struct{} // closed by stop
	stopped   sync.WaitGroup

	// mu guards attached and ended: a viewer is attached to its tracks
	// once, and never after it stopped.
	mu              sync.Mutex
	attached, ended bool
}

// attach connects the viewer's sinks to their tracks, once; it reports
// whether it did.
func (v *viewer) attach() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.attached || v.ended {
		return false
	}
	v.attached = true
	for _, s := range v.sinks {
		s.out.track.attach(s)
	}
	return true
}

// run writes queued packets until the viewer is closed.
func (v *viewer) run() {
	defer v.stopped.Done()
	for {
		select {
		case it := <-v.queue:
			if err := it.out.write(&it.p.hdr, it.p.payload); err == nil {
				v.sent.Add(1)
			}
		case <-v.done:
			return
		}
	}
}

// readRTCP serves the viewer's feedback on one sender: NACKs from the
// track's history, keyframe requests upstream.
func (v *viewer) readRTCP(sender *webrtc.RTPSender, out *localTrack) {
	defer v.stopped.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := sender.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				out.track.requestKeyframe()
			case *rtcp.TransportLayerNack:
				for _, pair := range p.Nacks {
					for _, seq := range pair.PacketList() {
						if pk := out.track.lookup(seq); pk != nil {
							if out.write(&pk.hdr, pk.payload) == nil {
								v.retransmitted.Add(1)
								out.track.nacksServed.Add(1)
							}
						}
					}
				}
			}
		}
	}
}

// close implements session (a DELETE of the WHEP resource).
func (v *viewer) close() error {
	return v.hub.s.removeViewer(v)
}

// stop detaches the viewer and waits for its goroutines.
func (v *viewer) stop() error {
	var err error
	v.closeOnce.Do(func() {
		v.mu.Lock()
		v.ended = true
		for _, s := range v.sinks {
			s.out.track.detach(s)
		}
		v.mu.Unlock()
		close(v.done)
		err = v.pc.Close()
		v.stopped.Wait()
	})
	return err
}

// localTrack is a viewer's outgoing track: a webrtc.TrackLocal bound to
// exactly one peer connection, writing the shared packets with the
// session's SSRC and payload type and no header extensions.
type localTrack struct {
	// Immutable after creation.
	track *track
	video bool
	id    string

	// Set once by Bind.
	bound   atomic.Bool
	ssrc    uint32
	pt      uint8
	writer  webrtc.TrackLocalWriter
	bindMu  sync.Mutex
	unbound atomic.Bool

	// wmu guards hdr, the header written, reused so that a packet costs
	// no allocation per viewer (the writer and the NACK reader share it).
	wmu sync.Mutex
	hdr rtp.Header
}

var errNotBound = errors.New("track not bound")

// write sends one packet to the viewer.
func (l *localTrack) write(h *rtp.Header, payload []byte) error {
	if !l.bound.Load() || l.unbound.Load() {
		return errNotBound
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.hdr = *h
	l.hdr.SSRC, l.hdr.PayloadType = l.ssrc, l.pt
	_, err := l.writer.WriteRTP(&l.hdr, payload)
	return err
}

// Bind implements webrtc.TrackLocal: it picks the negotiated codec that
// matches the stream's.
func (l *localTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	l.bindMu.Lock()
	defer l.bindMu.Unlock()
	want := l.track.codec
	var best *webrtc.RTPCodecParameters
	for i, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, want.MimeType) || c.ClockRate != want.ClockRate {
			continue
		}
		if strings.EqualFold(want.MimeType, mimeH264) && fmtpValue(c.SDPFmtpLine, "packetization-mode") != "1" {
			continue
		}
		if best == nil || fmtpValue(c.SDPFmtpLine, "profile-level-id") == fmtpValue(want.SDPFmtpLine, "profile-level-id") {
			best = &ctx.CodecParameters()[i]
		}
	}
	if best == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	l.ssrc, l.pt, l.writer = uint32(ctx.SSRC()), uint8(best.PayloadType), ctx.WriteStream()
	l.bound.Store(true)
	return *best, nil
}

// Unbind implements webrtc.TrackLocal.
func (l *localTrack) Unbind(webrtc.TrackLocalContext) error {
	l.unbound.Store(true)
	return nil
}

// ID, RID, StreamID and Kind implement webrtc.TrackLocal.
func (l *localTrack) ID() string                { return l.id }
func (l *localTrack) RID() string               { return "" }
func (l *localTrack) StreamID() string          { return "cloudbox" }
func (l *localTrack) Kind() webrtc.RTPCodecType { return l.track.kind }

// fmtpValue returns the value of key in an SDP fmtp line ("a=1;b=2").
func fmtpValue(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}
