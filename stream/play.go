package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// PlayOptions describe a viewer.
type PlayOptions struct {
	// Relay is the node ID of a box that pulls the stream to relay it; ""
	// for a person. A relay's request is answered only with a stream live
	// on this box: it never makes this box pull the stream in turn, so
	// pulls cannot loop.
	Relay string
}

// Play starts a WHEP session for stream name with an SDP offer that
// receives audio and/or video. A stream not live on this box is pulled
// from Config.Sources first. It fails with ErrNotFound when no box has
// the stream, ErrBadOffer or ErrUnsupportedCodec for an offer it cannot
// use, ErrTooMany at the viewer limit.
func (s *Server) Play(ctx context.Context, name, offer string, opt PlayOptions) (Answer, error) {
	if err := ValidName(name); err != nil {
		return Answer{}, err
	}
	if _, err := checkOffer(offer, false); err != nil {
		s.counters.rejected.Add(1)
		return Answer{}, err
	}
	s.mu.Lock()
	h, closed, full := s.hubs[name], s.closed, s.viewers >= s.cfg.MaxViewers
	s.mu.Unlock()
	switch {
	case closed:
		return Answer{}, ErrClosed
	case full:
		s.counters.rejected.Add(1)
		return Answer{}, fmt.Errorf("%w: %d viewers on this box", ErrTooMany, s.cfg.MaxViewers)
	case h == nil && opt.Relay != "":
		return Answer{}, fmt.Errorf("%w: %q is not live on this box", ErrNotFound, name)
	case h == nil:
		var err error
		if h, err = s.startRelay(name); err != nil {
			return Answer{}, err
		}
	}
	wait := s.cfg.SetupTimeout
	if h.relay {
		// The pull may have to try a second source.
		wait *= 3
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-h.ready:
	case <-h.closed:
		return Answer{}, fmt.Errorf("%w: %q ended", ErrNotFound, name)
	case <-t.C:
		return Answer{}, fmt.Errorf("%w: %q has no media yet; try again", ErrNotFound, name)
	case <-ctx.Done():
		return Answer{}, ctx.Err()
	}

	pc, err := s.playAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return Answer{}, fmt.Errorf("creating peer connection: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		pc.Close()
		s.counters.rejected.Add(1)
		return Answer{}, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	v := &viewer{hub: h, pc: pc, queue: make(chan item, viewerQueue), start: time.Now(), relay: opt.Relay,
		done: make(chan struct{})}
	h.mu.Lock()
	tracks := h.tracks
	h.mu.Unlock()
	var senders []*webrtc.RTPSender
	for _, t := range tracks {
		out := &localTrack{track: t, video: t.video, id: t.id}
		snd, err := pc.AddTrack(out)
		if err != nil {
			pc.Close()
			return Answer{}, fmt.Errorf("adding %s track: %w", t.kind, err)
		}
		v.outs = append(v.outs, out)
		v.sinks = append(v.sinks, &sink{v: v, out: out})
		senders = append(senders, snd)
	}
	ans, err := s.answer(ctx, pc)
	if err != nil {
		pc.Close()
		s.counters.rejected.Add(1)
		return Answer{}, err
	}
	if n, err := countSections(ans, "sendonly", "sendrecv"); err != nil || n == 0 {
		pc.Close()
		s.counters.rejected.Add(1)
		return Answer{}, fmt.Errorf("%w: the offer accepts none of the stream's codecs (%s)", ErrUnsupportedCodec, codecList(tracks))
	}
	id, err := s.addSession(v)
	if err != nil {
		pc.Close()
		return Answer{}, err
	}
	v.id = id
	if !s.addViewer(h, v) {
		s.dropSession(id)
		pc.Close()
		return Answer{}, fmt.Errorf("%w: %q ended", ErrNotFound, name)
	}
	v.stopped.Add(1 + len(senders))
	go v.run()
	for i, snd := range senders {
		go v.readRTCP(snd, v.outs[i])
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			// Queue the cached group of pictures now that packets can
			// be written.
			if v.attach() {
				s.counters.firstFrames.Add(1)
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.removeViewer(v)
		}
	})
	s.log.Info("viewer joined", "stream", name, "session", id, "relay", opt.Relay)
	return Answer{SDP: ans, Session: id}, nil
}

func codecList(tracks []*track) string {
	out := ""
	for i, t := range tracks {
		if i > 0 {
			out += ", "
		}
		out += t.codec.MimeType
	}
	return out
}

// addViewer registers v with h unless h is closed.
func (s *Server) addViewer(h *hub, v *viewer) bool {
	select {
	case <-h.closed:
		return false
	default:
	}
	s.mu.Lock()
	s.viewers++
	s.mu.Unlock()
	h.mu.Lock()
	h.viewers[v] = struct{}{}
	h.mu.Unlock()
	s.counters.viewersTotal.Add(1)
	return true
}

// removeViewer ends v and unregisters it; idempotent.
func (s *Server) removeViewer(v *viewer) error {
	h := v.hub
	h.mu.Lock()
	_, ok := h.viewers[v]
	delete(h.viewers, v)
	if len(h.viewers) == 0 {
		h.idleSince = time.Now()
	}
	h.mu.Unlock()
	if ok {
		s.mu.Lock()
		s.viewers--
		delete(s.sessions, v.id)
		s.mu.Unlock()
		s.counters.sent.Add(v.sent.Load())
		s.counters.dropped.Add(v.dropped.Load())
		s.counters.retransmitted.Add(v.retransmitted.Load())
	}
	return v.stop()
}
